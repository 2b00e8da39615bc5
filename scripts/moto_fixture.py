#!/usr/bin/env python3
"""Seeds and reads a local moto server for the tests and the demo (boto3: an implementation independent
of the Rust SDK the function uses).

  moto_fixture.py --endpoint URL seed --regions us-west-2,eu-west-1 [--vpcs 2] [--subnets 3]
      creates VPCs with subnets in several zones and route tables, then prints what EC2 now lists
      (moto's default VPCs included) as JSON: {region: {vpcId: {"subnets": [...], "routeTables": [...]}}}
  moto_fixture.py --endpoint URL inventory --regions us-west-2,eu-west-1
      prints what boto3 lists, in detail: {region: {vpcId: {"cidrBlock", "isDefault", "ownerId",
      "subnets": {subnetId: {"cidrBlock", "availabilityZone", "availabilityZoneId",
      "availableIpAddressCount", "mapPublicIpOnLaunch"}}, "routeTables": [ids]}}}
  moto_fixture.py --endpoint URL presign --bucket B --key K     prints a pre-signed PUT URL (creates B, with
      versioning, so that every PUT to K is kept)
  moto_fixture.py --endpoint URL read --bucket B --key K        prints the object; exit 1 if absent or if K
      was PUT more than once (CloudFormation reads one answer; a second PUT would overwrite the first)
  moto_fixture.py --endpoint URL sns-topic --name N             creates a topic and an SQS queue subscribed
      to it (raw delivery); prints {"topicArn", "queueUrl"}
  moto_fixture.py --endpoint URL sqs-drain --queue-url Q        prints every message body as a JSON list
  moto_fixture.py --endpoint URL peering --provider-account A --provider-cidr C [--vpc V] [--state S]
      the provider's side of a VPC peering: a VPC with CIDR C in account A (moto's x-moto-account-id
      header: moto keeps one backend per account) requests peering into the customer's VPC V (created, with
      a second route table, when not given) in moto's default account 123456789012; --state accepted or
      rejected then answers it from the customer's side; --conflicting-route first routes C to an internet
      gateway in the VPC's last route table. Prints {"vpcId", "routeTableIds",
      "providerVpcId", "peeringConnectionId"}
  moto_fixture.py --endpoint URL routes --vpc V     prints {routeTableId: {destination: target}} of V
  moto_fixture.py --endpoint URL peering-status --id PCX      prints the connection's status code
  moto_fixture.py --endpoint URL assume-role --role-name R --session S
      creates the IAM role R (trusting Lambda) and assumes it; prints the temporary credentials as
      {"accessKeyId", "secretAccessKey", "sessionToken", "arn"} (a function's credentials are such a session)
  moto_fixture.py --endpoint URL add-subnet --region R [--vpc V]
      adds a subnet in the first free /24 of VPC V (default: the region's first non-default VPC); prints
      {"vpcId", "subnetId", "cidrBlock"} (the account changing after its stack reported it)
  moto_fixture.py --endpoint URL secret --name N --value V    creates (or updates) a Secrets Manager secret;
      prints its ARN
"""
import argparse
import ipaddress
import json
import sys

import boto3
from botocore.config import Config

CREDS = dict(aws_access_key_id="testing", aws_secret_access_key="testing")
# The account moto answers as when a request names none (the tests' stacks run in it).
DEFAULT_ACCOUNT = "123456789012"


def client(service, endpoint, region):
    return boto3.client(service, endpoint_url=endpoint, region_name=region,
                        config=Config(retries={"max_attempts": 2}, signature_version="s3v4" if service == "s3" else None),
                        **CREDS)


def account_client(service, endpoint, region, account):
    """A client acting as `account`: moto keeps one backend per account and reads it from this header."""
    c = client(service, endpoint, region)
    c.meta.events.register("before-sign.*.*", lambda request, **_: request.headers.__setitem__("x-moto-account-id", account))
    return c


def peering(args):
    ec2 = client("ec2", args.endpoint, args.region)
    provider = account_client("ec2", args.endpoint, args.region, args.provider_account)
    vpc = args.vpc
    if not vpc:
        vpc = ec2.create_vpc(CidrBlock=args.vpc_cidr)["Vpc"]["VpcId"]
        ec2.create_route_table(VpcId=vpc)
    tables = sorted(t["RouteTableId"] for t in
                    ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"])
    provider_vpc = provider.create_vpc(CidrBlock=args.provider_cidr)["Vpc"]["VpcId"]
    pcx = provider.create_vpc_peering_connection(VpcId=provider_vpc, PeerVpcId=vpc, PeerOwnerId=DEFAULT_ACCOUNT)
    pcx = pcx["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    if args.conflicting_route:
        igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        ec2.create_route(RouteTableId=tables[-1], DestinationCidrBlock=args.provider_cidr, GatewayId=igw)
    if args.state == "accepted":
        ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    elif args.state == "rejected":
        ec2.reject_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    print(json.dumps({"vpcId": vpc, "routeTableIds": sorted(tables), "providerVpcId": provider_vpc,
                      "peeringConnectionId": pcx}))


def routes(args):
    ec2 = client("ec2", args.endpoint, args.region)
    out = {}
    for t in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [args.vpc]}])["RouteTables"]:
        out[t["RouteTableId"]] = {
            r.get("DestinationCidrBlock", ""): r.get("VpcPeeringConnectionId") or r.get("GatewayId") or ""
            for r in t["Routes"]
        }
    print(json.dumps(out, sort_keys=True))


def peering_status(args):
    ec2 = client("ec2", args.endpoint, args.region)
    (c,) = ec2.describe_vpc_peering_connections(VpcPeeringConnectionIds=[args.id])["VpcPeeringConnections"]
    print(c["Status"]["Code"])


def seed(args):
    regions = [r for r in args.regions.split(",") if r]
    for ri, region in enumerate(regions):
        ec2 = client("ec2", args.endpoint, region)
        zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
        for v in range(args.vpcs):
            net = ipaddress.ip_network(f"10.{ri * 16 + v}.0.0/16")
            vpc = ec2.create_vpc(CidrBlock=str(net))["Vpc"]["VpcId"]
            ec2.create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": f"{args.name_prefix}-{region}-{v}"}])
            subnets = []
            for s, cidr in zip(range(args.subnets), net.subnets(new_prefix=24)):
                sub = ec2.create_subnet(VpcId=vpc, CidrBlock=str(cidr), AvailabilityZone=zones[s % len(zones)])
                subnets.append(sub["Subnet"]["SubnetId"])
                ec2.create_tags(Resources=[subnets[-1]], Tags=[{"Key": "Name", "Value": f"subnet-{s}"}])
            igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
            ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
            public = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
            ec2.create_route(RouteTableId=public, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
            for sub in subnets[: max(1, len(subnets) // 2)]:
                ec2.associate_route_table(RouteTableId=public, SubnetId=sub)
    print(json.dumps(listing(args.endpoint, regions), indent=1, sort_keys=True))


def listing(endpoint, regions):
    out = {}
    for region in regions:
        ec2 = client("ec2", endpoint, region)
        vpcs = {v["VpcId"]: {"subnets": [], "routeTables": []} for v in ec2.describe_vpcs()["Vpcs"]}
        for s in ec2.describe_subnets()["Subnets"]:
            vpcs[s["VpcId"]]["subnets"].append(s["SubnetId"])
        for t in ec2.describe_route_tables()["RouteTables"]:
            vpcs[t["VpcId"]]["routeTables"].append(t["RouteTableId"])
        for v in vpcs.values():
            v["subnets"].sort()
            v["routeTables"].sort()
        out[region] = vpcs
    return out


def inventory(args):
    out = {}
    for region in [r for r in args.regions.split(",") if r]:
        ec2 = client("ec2", args.endpoint, region)
        vpcs = {v["VpcId"]: {"cidrBlock": v["CidrBlock"], "isDefault": v["IsDefault"], "ownerId": v["OwnerId"],
                             "subnets": {}, "routeTables": []}
                for v in ec2.describe_vpcs()["Vpcs"]}
        for s in ec2.describe_subnets()["Subnets"]:
            vpcs[s["VpcId"]]["subnets"][s["SubnetId"]] = {
                "cidrBlock": s["CidrBlock"], "availabilityZone": s["AvailabilityZone"],
                "availabilityZoneId": s["AvailabilityZoneId"],
                "availableIpAddressCount": s["AvailableIpAddressCount"],
                "mapPublicIpOnLaunch": s["MapPublicIpOnLaunch"]}
        for t in ec2.describe_route_tables()["RouteTables"]:
            vpcs[t["VpcId"]]["routeTables"].append(t["RouteTableId"])
        for v in vpcs.values():
            v["routeTables"].sort()
        out[region] = vpcs
    print(json.dumps(out, sort_keys=True))


def presign(args):
    s3 = client("s3", args.endpoint, "us-east-1")
    try:
        s3.create_bucket(Bucket=args.bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    # Every PUT becomes a version of its own: `read` counts them.
    s3.put_bucket_versioning(Bucket=args.bucket, VersioningConfiguration={"Status": "Enabled"})
    print(s3.generate_presigned_url("put_object", Params={"Bucket": args.bucket, "Key": args.key}, ExpiresIn=3600))


def read(args):
    s3 = client("s3", args.endpoint, "us-east-1")
    listed = s3.list_object_versions(Bucket=args.bucket, Prefix=args.key)
    versions = [v for v in listed.get("Versions", []) if v["Key"] == args.key]
    if not versions:
        sys.exit(f"read: nothing was PUT to {args.bucket}/{args.key}")
    if len(versions) > 1:
        sys.exit(f"read: {args.bucket}/{args.key} was PUT {len(versions)} times; exactly one answer is expected")
    sys.stdout.write(s3.get_object(Bucket=args.bucket, Key=args.key)["Body"].read().decode())


def sns_topic(args):
    sns = client("sns", args.endpoint, args.region)
    sqs = client("sqs", args.endpoint, args.region)
    topic = sns.create_topic(Name=args.name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=args.name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    print(json.dumps({"topicArn": topic, "queueUrl": queue_url}))


def sqs_drain(args):
    sqs = client("sqs", args.endpoint, args.region)
    bodies = []
    while True:
        msgs = sqs.receive_message(QueueUrl=args.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                   MessageAttributeNames=["All"]).get("Messages", [])
        if not msgs:
            break
        for m in msgs:
            attrs = {k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()}
            bodies.append({"body": m["Body"], "attributes": attrs})
            sqs.delete_message(QueueUrl=args.queue_url, ReceiptHandle=m["ReceiptHandle"])
    print(json.dumps(bodies))


def assume_role(args):
    iam = client("iam", args.endpoint, "us-east-1")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    try:
        role = iam.create_role(RoleName=args.role_name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    except iam.exceptions.EntityAlreadyExistsException:
        role = iam.get_role(RoleName=args.role_name)["Role"]
    sts = client("sts", args.endpoint, args.region)
    out = sts.assume_role(RoleArn=role["Arn"], RoleSessionName=args.session)
    c = out["Credentials"]
    print(json.dumps({"accessKeyId": c["AccessKeyId"], "secretAccessKey": c["SecretAccessKey"],
                      "sessionToken": c["SessionToken"], "arn": out["AssumedRoleUser"]["Arn"]}))


def secret(args):
    sm = client("secretsmanager", args.endpoint, args.region)
    try:
        arn = sm.create_secret(Name=args.name, SecretString=args.value)["ARN"]
    except sm.exceptions.ResourceExistsException:
        arn = sm.put_secret_value(SecretId=args.name, SecretString=args.value)["ARN"]
    print(arn)


def add_subnet(args):
    ec2 = client("ec2", args.endpoint, args.region)
    vpcs = ec2.describe_vpcs()["Vpcs"]
    vpc = next(v for v in vpcs if (v["VpcId"] == args.vpc if args.vpc else not v.get("IsDefault")))
    used = {s["CidrBlock"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]}
    cidr = next(str(c) for c in ipaddress.ip_network(vpc["CidrBlock"]).subnets(new_prefix=24) if str(c) not in used)
    subnet = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock=cidr)["Subnet"]["SubnetId"]
    print(json.dumps({"vpcId": vpc["VpcId"], "subnetId": subnet, "cidrBlock": cidr}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", required=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--regions", required=True)
    s.add_argument("--vpcs", type=int, default=2)
    s.add_argument("--subnets", type=int, default=3)
    s.add_argument("--name-prefix", default="demo")
    i = sub.add_parser("inventory")
    i.add_argument("--regions", required=True)
    for name in ("presign", "read"):
        x = sub.add_parser(name)
        x.add_argument("--bucket", required=True)
        x.add_argument("--key", required=True)
    t = sub.add_parser("sns-topic")
    t.add_argument("--name", required=True)
    t.add_argument("--region", default="us-west-2")
    q = sub.add_parser("sqs-drain")
    q.add_argument("--queue-url", required=True)
    q.add_argument("--region", default="us-west-2")
    pc = sub.add_parser("peering")
    pc.add_argument("--provider-account", required=True)
    pc.add_argument("--provider-cidr", required=True)
    pc.add_argument("--vpc")
    pc.add_argument("--vpc-cidr", default="10.20.0.0/16")
    pc.add_argument("--state", choices=["pending", "accepted", "rejected"], default="pending")
    pc.add_argument("--conflicting-route", action="store_true",
                    help="route the provider's CIDR to an internet gateway in the VPC's last route table")
    pc.add_argument("--region", default="us-west-2")
    rt = sub.add_parser("routes")
    rt.add_argument("--vpc", required=True)
    rt.add_argument("--region", default="us-west-2")
    ps = sub.add_parser("peering-status")
    ps.add_argument("--id", required=True)
    ps.add_argument("--region", default="us-west-2")
    a = sub.add_parser("assume-role")
    a.add_argument("--role-name", required=True)
    a.add_argument("--session", required=True)
    a.add_argument("--region", default="us-west-2")
    ad = sub.add_parser("add-subnet")
    ad.add_argument("--region", required=True)
    ad.add_argument("--vpc")
    sm = sub.add_parser("secret")
    sm.add_argument("--name", required=True)
    sm.add_argument("--value", required=True)
    sm.add_argument("--region", default="us-west-2")
    args = p.parse_args()
    {"seed": seed, "inventory": inventory, "presign": presign, "read": read, "sns-topic": sns_topic,
     "sqs-drain": sqs_drain, "peering": peering, "routes": routes, "peering-status": peering_status,
     "assume-role": assume_role, "secret": secret, "add-subnet": add_subnet}[args.cmd](args)


if __name__ == "__main__":
    main()
