"""Signs the plan's slack and standard-webhooks vectors with the vendors' own Python SDKs, merges
the node signer's output (github, stripe) and writes the vectors file.

Usage: python sign.py <repo root> <plan.json> <node output.json> <out.json>
"""

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from slack_sdk.signature import SignatureVerifier
from standardwebhooks import Webhook

NOW_AFTER_SIGNING_S = 30


def main() -> None:
    root, plan_path, node_path, out_path = (Path(a) for a in sys.argv[1:5])
    plan = json.loads(plan_path.read_text())
    from_node = json.loads(node_path.read_text())
    vectors = []
    for index, vector in enumerate(plan["vectors"]):
        body = (root / vector["fixture"]).read_bytes().decode("utf-8")
        timestamp = vector["timestamp"]
        headers = dict(vector["headers"])
        scheme = vector["scheme"]
        if scheme == "slack":
            signature = SignatureVerifier(vector["secret"]).generate_signature(timestamp=str(timestamp), body=body)
            headers |= {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature}
        elif scheme == "standard-webhooks":
            when = datetime.fromtimestamp(timestamp, tz=timezone.utc)
            signature = Webhook(vector["secret"]).sign(headers["webhook-id"], when, body)
            headers |= {"webhook-timestamp": str(timestamp), "webhook-signature": signature}
        elif str(index) in from_node:
            headers |= from_node[str(index)]
        else:
            sys.exit(f"no signer for scheme {scheme!r} (vector {index})")
        now = datetime.fromtimestamp(timestamp + NOW_AFTER_SIGNING_S, tz=timezone.utc)
        vectors.append(
            {
                "source": vector["source"],
                "scheme": scheme,
                "fixture": vector["fixture"],
                "secret": vector["secret"],
                "now": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "headers": headers,
            }
        )
    out_path.write_text(json.dumps(vectors, indent=2) + "\n")


if __name__ == "__main__":
    main()
