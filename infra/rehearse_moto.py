"""A moto server for the deploy rehearsal (infra/rehearse), run with .venv-tools' Python.

moto's CloudFormation skips resource types it does not model (it only warns), and a supported
resource that references a skipped one fails the stack. So this server teaches it the types the
stack uses that moto lacks (UNMODELLED): each one is created through its own service's API on
this same server, with the resolved properties as the request. botocore validates the request
against the service's model (names, types, required members, lengths) and moto's service
implementation then takes it, which is what the real CloudFormation handler does too.

Also fixes three differences from CloudFormation in moto 5.2: `Ref` of an AWS::Events::EventBus
resolves to an object instead of the bus name, `Fn::Equals` compares a Number parameter as a
number (CloudFormation passes every parameter to functions as a string, so
`!Equals [!Ref IngestReservedConcurrency, "-1"]` holds for the default -1), and a
CommaDelimitedList parameter left at its default is a text instead of a list.

Prints one JSON line once the server listens (the readiness signal): its port and the types it
creates through their APIs. Then serves until its standard input closes. Threaded: a resource's create calls back into this server while the stack's
request is still being served.
"""
import json
import logging
import sys
import threading
import warnings

import boto3
from botocore import xform_name
import moto.cloudformation.parsing as cloudformation
import moto.events.models
from moto.core.common_models import CloudFormationModel
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

moto.events.models.EventBus.physical_resource_id = property(lambda bus: bus.name)

moto_parse_condition = cloudformation.parse_condition


def parse_condition(condition, resources_map, condition_map):
    if isinstance(condition, dict) and list(condition) == ["Fn::Equals"]:
        left, right = (
            condition_map[v["Condition"]] if isinstance(v, dict) and "Condition" in v else cloudformation.clean_json(v, resources_map)
            for v in condition["Fn::Equals"]
        )
        return as_text(left) == as_text(right)
    return moto_parse_condition(condition, resources_map, condition_map)


def as_text(value):
    return str(value).lower() if isinstance(value, bool) else str(value)


cloudformation.parse_condition = parse_condition

moto_load_parameters = cloudformation.ResourceMap.load_parameters


def load_parameters(self):
    moto_load_parameters(self)
    for name, slot in self._template.get("Parameters", {}).items():
        value = self.resolved_parameters.get(name)
        if slot.get("Type") == "CommaDelimitedList" and isinstance(value, str):
            self.resolved_parameters[name] = value.split(",")
            self._parsed_resources[name] = self.resolved_parameters[name]


cloudformation.ResourceMap.load_parameters = load_parameters

ENDPOINT = {}


def call(service, operation, region, params):
    """Calls `service.operation` on this server, with CloudFormation's coercion of strings (as
    parameters give them) to the numbers and booleans the API's model expects."""
    client = boto3.client(
        service,
        endpoint_url=ENDPOINT["url"],
        region_name=region,
        aws_access_key_id="rehearsal",
        aws_secret_access_key="rehearsal",
    )
    shape = client.meta.service_model.operation_model(operation).input_shape
    return getattr(client, xform_name(operation))(**coerce(params, shape))


def coerce(value, shape):
    if shape is None:
        return value
    if shape.type_name == "structure" and isinstance(value, dict):
        return {k: coerce(v, shape.members.get(k)) for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [coerce(v, shape.member) for v in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: coerce(v, shape.value) for k, v in value.items()}
    if isinstance(value, str):
        if shape.type_name in ("integer", "long"):
            return int(value)
        if shape.type_name in ("double", "float"):
            return float(value)
        if shape.type_name == "boolean":
            return value.lower() == "true"
    return value


def pick(properties, *names):
    return {name: properties[name] for name in names if name in properties}


# moto files every model under a service, the second part of its module's dotted name.
MODULE = "rehearsal.unmodelled"


class Unmodelled:
    """A resource created through its service's API; `ref` is what `Ref` returns, `attributes`
    what `Fn::GetAtt` may read. Each type also names CloudFormationModel as a direct base:
    moto finds its models as that class's direct subclasses."""

    TYPE = ""
    NAME = ""

    def __init__(self, ref, attributes):
        self.ref = ref
        self.attributes = attributes

    @property
    def physical_resource_id(self):
        return self.ref

    def get_cfn_attribute(self, attribute_name):
        return self.attributes[attribute_name]

    @classmethod
    def has_cfn_attr(cls, attr):
        return True

    @classmethod
    def cloudformation_type(cls):
        return cls.TYPE

    @classmethod
    def cloudformation_name_type(cls):
        return cls.NAME

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        return cls.create(resource_name, cloudformation_json.get("Properties") or {}, region_name)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
        pass

    def is_created(self):
        return True


class Secret(Unmodelled, CloudFormationModel):
    __module__ = MODULE
    TYPE, NAME = "AWS::SecretsManager::Secret", "Name"

    @classmethod
    def create(cls, name, p, region):
        request = pick(p, "Description", "KmsKeyId", "SecretString")
        generate = p.get("GenerateSecretString")
        if generate is not None:
            # SecretStringTemplate and GenerateStringKey are CloudFormation's own (a JSON secret).
            options = {k: v for k, v in generate.items() if k not in ("SecretStringTemplate", "GenerateStringKey")}
            password = call("secretsmanager", "GetRandomPassword", region, options)["RandomPassword"]
            if "GenerateStringKey" in generate:
                document = json.loads(generate.get("SecretStringTemplate", "{}"))
                document[generate["GenerateStringKey"]] = password
                password = json.dumps(document)
            request["SecretString"] = password
        arn = call("secretsmanager", "CreateSecret", region, {"Name": name, **request})["ARN"]
        return cls(arn, {"Id": arn})


class Connection(Unmodelled, CloudFormationModel):
    __module__ = MODULE
    TYPE, NAME = "AWS::Events::Connection", "Name"

    @classmethod
    def create(cls, name, p, region):
        request = pick(p, "Description", "AuthorizationType", "AuthParameters", "InvocationConnectivityParameters")
        answer = call("events", "CreateConnection", region, {"Name": name, **request})
        description = call("events", "DescribeConnection", region, {"Name": name})
        return cls(name, {"Arn": answer["ConnectionArn"], "SecretArn": description.get("SecretArn", "")})


class ApiDestination(Unmodelled, CloudFormationModel):
    __module__ = MODULE
    TYPE, NAME = "AWS::Events::ApiDestination", "Name"

    @classmethod
    def create(cls, name, p, region):
        request = pick(p, "Description", "ConnectionArn", "InvocationEndpoint", "HttpMethod", "InvocationRateLimitPerSecond")
        answer = call("events", "CreateApiDestination", region, {"Name": name, **request})
        return cls(name, {"Arn": answer["ApiDestinationArn"]})


class HttpApi(Unmodelled, CloudFormationModel):
    __module__ = MODULE
    TYPE, NAME = "AWS::ApiGatewayV2::Api", "Name"

    @classmethod
    def create(cls, name, p, region):
        if "Body" not in p:
            raise ValueError("the rehearsal only knows APIs defined by an OpenAPI Body (as SAM makes them)")
        # moto has no ImportApi: create an empty API, then reimport the body into it.
        api_id = call("apigatewayv2", "CreateApi", region, {"Name": name, "ProtocolType": "HTTP"})["ApiId"]
        request = {"ApiId": api_id, "Body": json.dumps(p["Body"]), **pick(p, "FailOnWarnings", "Basepath")}
        answer = call("apigatewayv2", "ReimportApi", region, request)
        return cls(api_id, {"ApiEndpoint": answer.get("ApiEndpoint", ""), "ApiId": api_id})


class Stage(Unmodelled, CloudFormationModel):
    __module__ = MODULE
    TYPE, NAME = "AWS::ApiGatewayV2::Stage", "StageName"

    @classmethod
    def create(cls, name, p, region):
        request = pick(p, "ApiId", "AutoDeploy", "AccessLogSettings", "DefaultRouteSettings", "Description", "StageVariables", "Tags")
        call("apigatewayv2", "CreateStage", region, {"StageName": name, **request})
        return cls(name, {})


class Alarm(Unmodelled, CloudFormationModel):
    __module__ = MODULE
    TYPE, NAME = "AWS::CloudWatch::Alarm", "AlarmName"

    @classmethod
    def create(cls, name, p, region):
        call("cloudwatch", "PutMetricAlarm", region, {"AlarmName": name, **p})
        arn = call("cloudwatch", "DescribeAlarms", region, {"AlarmNames": [name]})["MetricAlarms"][0]["AlarmArn"]
        return cls(name, {"Arn": arn})


class EventInvokeConfig(Unmodelled, CloudFormationModel):
    __module__ = MODULE
    TYPE = "AWS::Lambda::EventInvokeConfig"

    @classmethod
    def create(cls, name, p, region):
        call("lambda", "PutFunctionEventInvokeConfig", region, p)
        return cls(name, {})


class QueuePolicy(Unmodelled, CloudFormationModel):
    __module__ = MODULE
    TYPE = "AWS::SQS::QueuePolicy"

    @classmethod
    def create(cls, name, p, region):
        for queue_url in p["Queues"]:
            attributes = {"Policy": json.dumps(p["PolicyDocument"])}
            call("sqs", "SetQueueAttributes", region, {"QueueUrl": queue_url, "Attributes": attributes})
        return cls(name, {})


UNMODELLED = [cls.TYPE for cls in Unmodelled.__subclasses__()]

if __name__ == "__main__":
    # Quiet: no line per request, no warning per resource moto models partly.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    ENDPOINT["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"port": server.server_address[1], "unmodelled": UNMODELLED}), flush=True)
    sys.stdin.read()
    server.shutdown()
