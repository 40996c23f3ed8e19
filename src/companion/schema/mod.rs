//! The schema the migrations produce, and the live database's against it: what the
//! history table cannot see (a hotfix `ALTER TABLE`, an index made by hand during an
//! incident, a dropped constraint). The expected objects are recorded per version when
//! the migrations are written ([`expected`]), read live from the catalogue
//! ([`objects`]) and compared, with the accepted differences ([`drift`]).

mod comparison;
pub(crate) mod drift;
pub mod expected;
pub mod objects;

pub(crate) use self::comparison::{
    Comparison, SchemaError, SchemaFiles, compare_live, print_expected,
};
