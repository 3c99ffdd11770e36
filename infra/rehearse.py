"""The deploy rehearsal (run by infra/check with .venv-infra's Python; moto from .venv-tools).

Translates infra/template.yaml with aws-sam-translator, as `sam deploy` has CloudFormation do,
then creates the translated stack in moto's CloudFormation (a moto server of its own on a free
loopback port, see infra/rehearse_moto.py) and waits for CREATE_COMPLETE, twice:

  1. a first deployment on a new account: every parameter at its default;
  2. the other branches: JWT authorization, every destination enabled (its queues, secret,
     rules, alarms, the deliver function and its event source mappings), an alarm topic, an
     adopted identity salt and a reserved concurrency.

Then it checks through the services' APIs what a deployer would notice: no reserved concurrency
unless asked (new accounts often have a quota of 10), the 17 routes invoking this stack's
functions, the sources function reading its signing secrets by ARN, the marketing dead letters' retention, the adopted salt. And, on the translated
template, what moto does not model: a rollback of the first deployment keeps nothing (no
DeletionPolicy Retain, no deletion protection at the defaults), point-in-time recovery keeps 7
days, and the key lets services use it only under a condition.

No AWS account, no network: everything stays on the loopback interface.
"""
import io
import json
import os
import subprocess
import sys
import time
import zipfile

import boto3
from botocore.config import Config
from cfnlint.decode import decode
from samtranslator.public.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform

REGION = "eu-west-1"
CODE_BUCKET = "rehearsal-code"
CODE_KEY = "functions.zip"
# A Nudge Requested dead letter carries a handle: it must not outlive a long weekend by much.
DESTINATION_DEAD_LETTER_RETENTION = 4 * 24 * 3600
DESTINATIONS = ["Hubspot", "Mailchimp", "Klaviyo", "CustomerIo", "Slack", "Zendesk", "StandardWebhooks"]
# What each destination needs besides Enable<Tool>=true.
DESTINATION_SETTINGS = {
    "MailchimpListId": "a1b2c3d4e5",
    "MailchimpServer": "us21",
    "CustomerIoRegion": "eu",
    "SlackCustomerUrlBase": "https://dashboard.example.com/customers/",
    "ZendeskSubdomain": "example",
    "ZendeskEmail": "agent@example.com",
    "StandardWebhooksUrl": "https://hooks.example.com/engagement",
}

problems = []


def expect(condition, problem):
    if not condition:
        problems.append(problem)


class NoManagedPolicies:
    """The template names no AWS managed policies, so the translator never needs to look one up."""

    def load(self):
        raise RuntimeError("the template names a managed policy: the rehearsal cannot resolve it offline")


def translate(path):
    template, matches = decode(path)
    if matches or template is None:
        sys.exit("\n".join(str(m) for m in matches or []) or f"{path}: not a template")
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            # `sam build` and `sam deploy` put the built code in S3 and point CodeUri there.
            resource["Properties"]["CodeUri"] = f"s3://{CODE_BUCKET}/{CODE_KEY}"
    try:
        return transform(template, {}, NoManagedPolicies())
    except InvalidDocumentException as error:
        sys.exit("aws-sam-translator: " + "; ".join(cause.message for cause in error.causes))


def default_of(template, value):
    """A property's value with every parameter at its default (a literal or a `Ref`)."""
    if isinstance(value, dict) and list(value) == ["Ref"]:
        return template.get("Parameters", {}).get(value["Ref"], {}).get("Default")
    return value


def check_template(template):
    """What moto cannot show. A failed first deployment must leave nothing behind, or the retry
    collides with it (the table's name is fixed): RetainExceptOnCreate keeps resources, except
    when the deployment that created them rolls back, and deletion protection would make that
    rollback's delete fail. A service may use the key only on this stack's behalf."""
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::KMS::Key":
            for statement in resource["Properties"]["KeyPolicy"]["Statement"]:
                expect(
                    "Service" not in statement.get("Principal", {}) or statement.get("Condition"),
                    f"{name}: statement {statement.get('Sid')} lets a service use the key for anyone (no Condition)",
                )
        expect(
            resource.get("DeletionPolicy") != "Retain",
            f"{name}: DeletionPolicy Retain survives the rollback of a failed first deploy; use RetainExceptOnCreate",
        )
        if resource["Type"] == "AWS::DynamoDB::Table":
            protected = default_of(template, resource["Properties"].get("DeletionProtectionEnabled", False))
            expect(
                str(protected).lower() != "true",
                f"{name}: deletion protection on by default blocks the rollback of a failed first deploy",
            )
            # Checked here: moto's CloudFormation ignores the specification.
            recovery = resource["Properties"].get("PointInTimeRecoverySpecification") or {}
            expect(
                recovery.get("PointInTimeRecoveryEnabled") is True and recovery.get("RecoveryPeriodInDays") == 7,
                f"{name}: point-in-time recovery must be on with a 7-day window (ARCHITECTURE.md, erasure)",
            )


def start_moto():
    moto = subprocess.Popen(
        [".venv-tools/bin/python", "infra/rehearse_moto.py"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    # One line once the server listens: its port, and the types it creates through their APIs.
    try:
        ready = json.loads(moto.stdout.readline())
    except ValueError:
        moto.kill()
        sys.exit("moto did not start")
    return moto, f"http://127.0.0.1:{ready['port']}", ready["unmodelled"]


def clients(endpoint):
    options = dict(
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="rehearsal",
        aws_secret_access_key="rehearsal",
        config=Config(retries={"max_attempts": 1}),
    )
    return lambda service: boto3.client(service, **options)


def deploy(client, stack, template, parameters):
    cloudformation = client("cloudformation")
    started = time.monotonic()
    cloudformation.create_stack(
        StackName=stack,
        TemplateBody=json.dumps(template),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    while True:
        status = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
        if not status["StackStatus"].endswith("_IN_PROGRESS"):
            break
        if time.monotonic() - started > 60:
            sys.exit(f"{stack}: still {status['StackStatus']} after 60 s")
        time.sleep(0.2)
    print(f"{stack}: {status['StackStatus']} in {time.monotonic() - started:.1f} s")
    if status["StackStatus"] != "CREATE_COMPLETE":
        sys.exit(f"{stack}: {status.get('StackStatusReason', 'no reason given')}")
    resources = cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in status.get("Outputs", [])}
    # moto lists the resources whose condition is false too, without a logical id.
    return {r["LogicalResourceId"]: r for r in resources if "LogicalResourceId" in r}, outputs


def check_stack(client, stack, resources, reserved):
    physical = {name: r.get("PhysicalResourceId") for name, r in resources.items()}
    lambda_ = client("lambda")
    for function in ("IngestFunction", "ApiFunction", "RescoreFunction", "NudgeFunction", "SourcesFunction"):
        concurrency = lambda_.get_function_concurrency(FunctionName=physical[function]).get("ReservedConcurrentExecutions")
        expect(
            concurrency == reserved.get(function),
            f"{stack}: {function} reserves {concurrency} concurrent executions, expected {reserved.get(function)}",
        )

    # moto's OpenAPI import makes the routes and integrations but ignores `security`: the
    # authorizers are checked on the template by infra/check.
    apigateway = client("apigatewayv2")
    routes = apigateway.get_routes(ApiId=physical["EngagementHttpApi"])["Items"]
    integrations = {i["IntegrationId"]: i for i in apigateway.get_integrations(ApiId=physical["EngagementHttpApi"])["Items"]}
    expect(len(routes) == 17, f"{stack}: the HTTP API has {len(routes)} routes, expected 17")
    for route in routes:
        uri = integrations.get(route.get("Target", "").removeprefix("integrations/"), {}).get("IntegrationUri", "")
        function = "SourcesFunction" if "/v1/sources/" in route["RouteKey"] else None
        expect(
            any(f":function:{physical[f]}/" in uri for f in ([function] if function else ("IngestFunction", "ApiFunction"))),
            f"{stack}: route {route['RouteKey']} does not invoke this stack's {'sources' if function else 'ingest or api'} function ({uri})",
        )

    # The sources function reads its signing secrets by ARN (not resolved into its environment),
    # from a secret the stack made empty and encrypted with its key.
    environment = lambda_.get_function_configuration(FunctionName=physical["SourcesFunction"])["Environment"]["Variables"]
    secret = client("secretsmanager").describe_secret(SecretId=environment.get("SOURCE_SECRETS_ARN", "missing"))
    expect(secret["ARN"] == physical["SourceSecretsSecret"], f"{stack}: SOURCE_SECRETS_ARN is not the stack's signing secrets")
    value = client("secretsmanager").get_secret_value(SecretId=secret["ARN"])["SecretString"]
    # The value itself is never printed: it is a secret.
    expect(value == "{}", f"{stack}: the signing secrets do not start as an empty object")

    sqs = client("sqs")
    lambda_functions = {physical["DeliverFunction"]} if "DeliverFunction" in physical else set()
    mappings = lambda_.list_event_source_mappings()["EventSourceMappings"] if lambda_functions else []
    for tool in DESTINATIONS:
        if f"{tool}DeliveryQueue" not in physical:
            continue
        queue = sqs.get_queue_attributes(QueueUrl=physical[f"{tool}DeliveryQueue"], AttributeNames=["All"])["Attributes"]
        dead_letters = sqs.get_queue_attributes(QueueUrl=physical[f"{tool}DeadLetterQueue"], AttributeNames=["All"])["Attributes"]
        redrive = json.loads(queue.get("RedrivePolicy", "{}"))
        expect(
            redrive.get("deadLetterTargetArn") == dead_letters["QueueArn"] and int(redrive.get("maxReceiveCount", 0)) > 1,
            f"{stack}: {tool}DeliveryQueue does not redrive to its own dead-letter queue ({redrive})",
        )
        for name, attributes in ((f"{tool}DeliveryQueue", queue), (f"{tool}DeadLetterQueue", dead_letters)):
            expect(attributes.get("KmsMasterKeyId"), f"{stack}: {name} is not encrypted with the stack key")
        expect(
            int(dead_letters["MessageRetentionPeriod"]) <= DESTINATION_DEAD_LETTER_RETENTION
            and int(dead_letters["MessageRetentionPeriod"]) > int(queue["MessageRetentionPeriod"]),
            f"{stack}: {tool}'s dead letters keep handles {dead_letters['MessageRetentionPeriod']} s (at most 4 days, longer than the queue)",
        )
        mapping = [m for m in mappings if m.get("EventSourceArn") == queue["QueueArn"]]
        expect(
            len(mapping) == 1 and any(f":function:{f}" in mapping[0].get("FunctionArn", "") for f in lambda_functions),
            f"{stack}: {tool}DeliveryQueue is not drained by this stack's deliver function ({mapping})",
        )
        if mapping:
            expect(
                mapping[0].get("FunctionResponseTypes") == ["ReportBatchItemFailures"],
                f"{stack}: {tool}'s event source mapping does not report partial batch failures",
            )


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)  # the translator asks for one
    template = translate(sys.argv[1] if len(sys.argv) > 1 else "infra/template.yaml")
    check_template(template)

    moto, endpoint, unmodelled = start_moto()
    try:
        client = clients(endpoint)
        s3 = client("s3")
        s3.create_bucket(Bucket=CODE_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("bootstrap", "#!/bin/sh\n")
        s3.put_object(Bucket=CODE_BUCKET, Key=CODE_KEY, Body=code.getvalue())

        resources, outputs = deploy(client, "engagement", template, {})
        check_stack(client, "engagement", resources, reserved={})
        expect("DeliverFunction" not in resources, "engagement: a deliver function although no destination is enabled")

        topic = client("sns").create_topic(Name="engagement-alarms")["TopicArn"]
        parameters = {
            "AuthMode": "JWT",
            "JwtIssuer": "https://issuer.example.com/",
            "JwtAudience": "engagement-api",
            **{f"Enable{tool}": "true" for tool in DESTINATIONS},
            **DESTINATION_SETTINGS,
            "AlarmTopicArn": topic,
            "IdentitySaltSecretArn": outputs["IdentitySaltSecret"],
            "IngestReservedConcurrency": "5",
        }
        resources, _ = deploy(client, "engagement-jwt", template, parameters)
        check_stack(client, "engagement-jwt", resources, reserved={"IngestFunction": 5})
        missing = [f"{tool}{kind}" for tool in DESTINATIONS for kind in ("DeliveryQueue", "Secret", "Rule", "Delivery", "RevokedAlarm") if f"{tool}{kind}" not in resources]
        expect(not missing and "DeliverFunction" in resources, f"engagement-jwt: destinations enabled, yet missing {missing}")
        expect("IdentitySaltSecret" not in resources, "engagement-jwt: generated a salt although one was adopted")
    finally:
        moto.stdin.close()
        try:
            moto.wait(timeout=10)
        except subprocess.TimeoutExpired:
            moto.kill()

    used = sorted({r["Type"] for r in template["Resources"].values()} & set(unmodelled))
    print("created through their service APIs (moto's CloudFormation lacks them): " + ", ".join(used))
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(f"deploy rehearsal: {len(problems)} problems")
    print("deploy rehearsal: ok")


if __name__ == "__main__":
    main()
