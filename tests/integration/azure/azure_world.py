"""The Azure side of integration_azure: the real distribution registry with token auth, an image
pushed to it, and tests/support/azure_fakes.py's FakeAad, FakeImds and AcrFront (the registry's
host the way ACR serves it) on 127.0.0.1. Writes DIR/world.json once everything answers, then
runs until its stdin closes (the test process ends), and stops it all.

usage: azure_world.py --dir DIR
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "support"))
import azure_fakes  # noqa: E402
import fixture  # noqa: E402
import registry  # noqa: E402

TENANT = "72f988bf-0000-0000-0000-2d7cd011db47"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
KUBELET_ID = "99999999-8888-7777-6666-555555555555"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    args = ap.parse_args()
    d = os.path.abspath(args.dir)
    for sub in ("registry", "aad-tls", "acr-tls"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    token_file = os.path.join(d, "azure-identity-token")
    with open(token_file, "w") as f:
        f.write("federated-token-1")
    reg = registry.start(os.path.join(d, "registry"), tls=False, auth="token")
    try:
        digest = fixture.push_image(fixture.connect(env=reg), "team/app", "v1", "hello from acr")
        aad_paths = registry.write_tls_material(os.path.join(d, "aad-tls"))
        aad = azure_fakes.FakeAad(TENANT, CLIENT_ID, token_file, cert=aad_paths["server.crt"],
                                  key=aad_paths["server.key"])
        imds = azure_fakes.FakeImds(TENANT, client_ids=(KUBELET_ID,))
        acr = azure_fakes.AcrFront(reg, lambda: aad.issued | imds.issued,
                                   os.path.join(d, "acr-tls"))
        world = {"aad_authority": aad.authority(), "aad_ca": aad_paths["ca.crt"],
                 "imds": imds.url, "acr": acr.address, "acr_ca": acr.ca, "tenant": TENANT,
                 "client_id": CLIENT_ID, "kubelet_id": KUBELET_ID, "token_file": token_file,
                 "repository": "team/app", "tag": "v1", "digest": digest}
        tmp = os.path.join(d, "world.json.tmp")
        with open(tmp, "w") as f:
            json.dump(world, f)
        os.rename(tmp, os.path.join(d, "world.json"))
        sys.stdin.read()  # until the test process closes our stdin
        for fake in (acr, imds, aad):
            fake.stop()
    finally:
        registry.stop(os.path.join(d, "registry"))


if __name__ == "__main__":
    main()
