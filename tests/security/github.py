"""A stand-in for GitHub's side of secret scanning: a generated P-256 key pair that
signs reports exactly as GitHub does (ECDSA, SHA-256, base64 DER over the raw body)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


@dataclass
class GitHubSigner:
    identifier: str
    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(
        cls, identifier: str = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c"
    ) -> GitHubSigner:
        return cls(identifier, ec.generate_private_key(ec.SECP256R1()))

    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def document(self) -> str:
        """The JSON GitHub publishes at /meta/public_keys/secret_scanning."""
        return json.dumps(
            {
                "public_keys": [
                    {
                        "key_identifier": self.identifier,
                        "key": self.public_pem(),
                        "is_current": True,
                    }
                ]
            }
        )

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self.private_key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()

    def headers(self, body: bytes) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "GITHUB-PUBLIC-KEY-IDENTIFIER": self.identifier,
            "GITHUB-PUBLIC-KEY-SIGNATURE": self.sign(body),
        }


def report(*tokens: str, url: str = "https://github.com/octo/repo/blob/abc/config.py#L3") -> bytes:
    return json.dumps(
        [
            {"token": token, "type": "keyplane_api_key", "url": url, "source": "content"}
            for token in tokens
        ]
    ).encode()
