#!/usr/bin/python3
"""Demo JWT keys and tokens for `make run`. DEMO ONLY.

  demo-token.py init                       create config/keys/{demo-signing-keys.json,jwks.json}
                                           if missing (private keys stay git-ignored)
  demo-token.py [--alg ES256] [--sub alice] [--roles user,payments] [--scopes a,b]
                [--ttl-s 3600] [--expired]  print a signed token

The issuer/audience match config/xgate.json (auth.jwt).
"""
import argparse
import base64
import json
import os
import sys
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

REPO = Path(__file__).resolve().parents[1]
KEY_DIR = REPO / "config" / "keys"
PRIVATE = KEY_DIR / "demo-signing-keys.json"
JWKS = KEY_DIR / "jwks.json"
ISSUER = "https://auth.xgate.test"
AUDIENCE = "xgate-demo"


def b64url_uint(n):
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(alg, kid, key):
    pub = key.public_key()
    if alg == "RS256":
        nums = pub.public_numbers()
        return {"kty": "RSA", "kid": kid, "alg": alg, "use": "sig",
                "n": b64url_uint(nums.n), "e": b64url_uint(nums.e)}
    if alg == "ES256":
        nums = pub.public_numbers()
        return {"kty": "EC", "kid": kid, "alg": alg, "use": "sig", "crv": "P-256",
                "x": b64url(nums.x.to_bytes(32, "big")), "y": b64url(nums.y.to_bytes(32, "big"))}
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "kid": kid, "alg": alg, "use": "sig", "crv": "Ed25519", "x": b64url(raw)}


def generate():
    keys = {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    }
    stamp = time.strftime("%Y%m%d")
    private, jwks = {}, {"keys": []}
    for alg, key in keys.items():
        kid = "demo-%s-%s" % (alg.lower(), stamp)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        private[alg] = {"kid": kid, "pem": pem}
        jwks["keys"].append(public_jwk(alg, kid, key))
    return private, jwks


def init(force=False):
    if PRIVATE.exists() and JWKS.exists() and not force:
        return
    KEY_DIR.mkdir(parents=True, exist_ok=True)
    private, jwks = generate()
    private["_warning"] = "DEMO ONLY: private signing keys for the xgate demo; never reuse"
    fd = os.open(str(PRIVATE) + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(private, fh, indent=2)
    os.replace(str(PRIVATE) + ".tmp", PRIVATE)
    with open(str(JWKS) + ".tmp", "w") as fh:
        json.dump(jwks, fh, indent=2)
    os.replace(str(JWKS) + ".tmp", JWKS)
    print("demo-token: generated demo keys in %s (DEMO ONLY)" % KEY_DIR, file=sys.stderr)


def mint(args):
    init()
    private = json.loads(PRIVATE.read_text())
    if args.alg not in private:
        sys.exit("demo-token: unknown --alg %s (have %s)" % (
            args.alg, ", ".join(k for k in private if not k.startswith("_"))))
    entry = private[args.alg]
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": args.sub, "iat": now,
              "exp": now - 3600 if args.expired else now + args.ttl_s}
    if args.roles:
        claims["roles"] = [r for r in args.roles.split(",") if r]
    if args.scopes:
        claims["scope"] = " ".join(s for s in args.scopes.split(",") if s)
    key = serialization.load_pem_private_key(entry["pem"].encode(), password=None)
    return jwt.encode(claims, key, algorithm=args.alg, headers={"kid": entry["kid"]})


def main():
    parser = argparse.ArgumentParser(description="Demo JWT keys and tokens (DEMO ONLY)")
    parser.add_argument("command", nargs="?", choices=["init", "token"], default="token")
    parser.add_argument("--force", action="store_true", help="init: regenerate the keys")
    parser.add_argument("--alg", default="ES256", choices=["RS256", "ES256", "EdDSA"])
    parser.add_argument("--sub", default="alice")
    parser.add_argument("--roles", default="user")
    parser.add_argument("--scopes", default="")
    parser.add_argument("--ttl-s", type=int, default=3600)
    parser.add_argument("--expired", action="store_true")
    args = parser.parse_args()
    if args.command == "init":
        init(args.force)
    else:
        print(mint(args))


if __name__ == "__main__":
    main()
