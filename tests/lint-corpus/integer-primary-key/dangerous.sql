CREATE TABLE audit_events (
    id serial PRIMARY KEY,
    body TEXT NOT NULL
);
