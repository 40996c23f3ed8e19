"""Prints SQL that inserts demo rows whose secrets are encrypted under a given key,
in the envelope format v1 (see README). Used by the local demo to give `reencrypt`
something to do: rows under the previous key, as after a key rotation."""

import base64
import json
import os
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def envelope(key_spec: str, plaintext: bytes) -> str:
    key_id, key_b64 = key_spec.split(":", 1)
    kek = base64.b64decode(key_b64)
    dek = AESGCM.generate_key(bit_length=256)
    wrap_nonce, data_nonce = os.urandom(12), os.urandom(12)
    payload = {
        "version": 1,
        "alg": "AES-256-GCM",
        "key_id": key_id,
        "dek_wrapped": base64.b64encode(wrap_nonce + AESGCM(kek).encrypt(wrap_nonce, dek, None)).decode(),
        "nonce": base64.b64encode(data_nonce).decode(),
        "ciphertext": base64.b64encode(AESGCM(dek).encrypt(data_nonce, plaintext, None)).decode(),
    }
    return json.dumps(payload, separators=(",", ":"))


def main() -> None:
    key_spec = sys.argv[1]
    for i in range(1, 6):
        value = envelope(key_spec, f"demo-api-key-{i}".encode()).replace("'", "''")
        print(
            "INSERT INTO llm_providers (name, provider_type, api_key_encrypted, api_key_set) "
            f"VALUES ('demo-{i}', 'llmsim', convert_to('{value}', 'UTF8'), TRUE);"
        )
    for i in range(1, 4):
        value = envelope(key_spec, f"demo-token-{i}".encode()).replace("'", "''")
        print(
            "INSERT INTO mcp_servers (name, url, auth_token_encrypted) "
            f"VALUES ('mcp-{i}', 'http://mcp-{i}.internal', convert_to('{value}', 'UTF8'));"
        )
    print("INSERT INTO llm_providers (name, provider_type) VALUES ('no-key', 'openai');")


if __name__ == "__main__":
    main()
