"""The CDK app: `make -C deploy synth` (or `npx cdk synth`) runs this file.

The stack is environment-agnostic: synthesis needs no AWS account, credentials or Docker.
cdk-nag's AwsSolutions checks run during synthesis; an unsuppressed finding fails it.
"""

from __future__ import annotations

from bidder_deploy.stack import build_app

if __name__ == "__main__":
    build_app().app.synth()
