#!/usr/bin/python3
"""Benchmark keys and tokens: writes the public side (jwks.json, rsa.pem, ec.pem) into the
directory given as argv[1] and prints `ALG TOKEN` lines. Private keys stay in memory."""
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://auth.bench.xgate.test"
AUDIENCE = "bench"


def pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def jwk(key, kid, to_jwk):
    out = to_jwk(key.public_key())
    out = json.loads(out) if isinstance(out, str) else dict(out)
    out["kid"] = kid
    return out


def main():
    out = sys.argv[1]
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    with open(out + "/jwks.json", "w") as fh:
        json.dump({"keys": [jwk(rsa_key, "rsa", RSAAlgorithm.to_jwk),
                            jwk(ec_key, "ec", ECAlgorithm.to_jwk)]}, fh)
    with open(out + "/rsa.pem", "wb") as fh:
        fh.write(pem(rsa_key))
    with open(out + "/ec.pem", "wb") as fh:
        fh.write(pem(ec_key))
    now = int(time.time())
    claims = {"sub": "bench-user", "iss": ISSUER, "aud": AUDIENCE, "iat": now,
              "exp": now + 6 * 3600, "roles": ["user"]}
    for alg, key, kid in (("RS256", rsa_key, "rsa"), ("ES256", ec_key, "ec")):
        print(alg, jwt.encode(claims, key, algorithm=alg, headers={"kid": kid}))


if __name__ == "__main__":
    main()
