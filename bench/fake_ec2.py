"""A local EC2 + SNS endpoint for benchmarks: the EC2 Query protocol for DescribeVpcs, DescribeSubnets and
DescribeRouteTables, paged the way EC2 pages (MaxResults, opaque NextTokens), and SNS Publish.

moto does not page, and its own per-request cost would dominate what is being measured; this server
pre-renders every page, so the backend's time is small, and records each request's server-side time
(from its headers being read to its response being written) so a handler's own overhead can be computed
as end-to-end time minus the time the backend was busy.

Both the Rust SDK (`AWS_ENDPOINT_URL`) and boto3 (`AWS_ENDPOINT_URL`) talk to it; requests are routed by
`Action`. The same data is served for every region.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

from linksupport.runtime_api import QuietServer

EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
SNS_NS = "http://sns.amazonaws.com/doc/2010-03-31/"
OWNER = "123456789012"
REGION = "us-west-2"
AZS = [("us-west-2a", "usw2-az1"), ("us-west-2b", "usw2-az2"), ("us-west-2c", "usw2-az3"), ("us-west-2d", "usw2-az4")]

# EC2's limits on MaxResults per action, and the key of the result set.
ACTIONS = {
    "DescribeVpcs": ("vpcSet", 5, 1000),
    "DescribeSubnets": ("subnetSet", 5, 1000),
    "DescribeRouteTables": ("routeTableSet", 5, 100),
}


def _hex(prefix: str, *parts) -> str:
    return prefix + hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:17]


def _tags(name: str, extra: dict | None = None) -> str:
    items = {"Name": name, **(extra or {})}
    return "<tagSet>" + "".join(
        f"<item><key>{k}</key><value>{v}</value></item>" for k, v in items.items()
    ) + "</tagSet>"


def _vpc(i: int, vpc_id: str) -> bytes:
    ipv6 = f"2600:1f14:{i:x}:ab00::/56"
    return f"""<item>
                <vpcId>{vpc_id}</vpcId>
                <ownerId>{OWNER}</ownerId>
                <state>available</state>
                <cidrBlock>10.{i % 256}.0.0/16</cidrBlock>
                <cidrBlockAssociationSet>
                    <item>
                        <cidrBlock>10.{i % 256}.0.0/16</cidrBlock>
                        <associationId>{_hex('vpc-cidr-assoc-', i)}</associationId>
                        <cidrBlockState><state>associated</state></cidrBlockState>
                    </item>
                </cidrBlockAssociationSet>
                <ipv6CidrBlockAssociationSet>
                    <item>
                        <ipv6CidrBlock>{ipv6}</ipv6CidrBlock>
                        <associationId>{_hex('vpc-cidr-assoc-', i, 'v6')}</associationId>
                        <ipv6CidrBlockState><state>associated</state></ipv6CidrBlockState>
                        <networkBorderGroup>us-west-2</networkBorderGroup>
                        <ipv6Pool>Amazon</ipv6Pool>
                    </item>
                </ipv6CidrBlockAssociationSet>
                <dhcpOptionsId>dopt-0a1b2c3d4e5f6a7b8</dhcpOptionsId>
                {_tags(f'vpc-{i}', {'team': 'platform', 'env': 'prod' if i % 2 else 'dev'})}
                <instanceTenancy>default</instanceTenancy>
                <isDefault>false</isDefault>
                <blockPublicAccessStates><internetGatewayBlockMode>off</internetGatewayBlockMode></blockPublicAccessStates>
            </item>""".encode()


def _subnet(i: int, j: int, vpc_id: str, subnet_id: str) -> bytes:
    az, az_id = AZS[j % len(AZS)]
    public = j % 2 == 0
    return f"""<item>
                <subnetId>{subnet_id}</subnetId>
                <subnetArn>arn:aws:ec2:{REGION}:{OWNER}:subnet/{subnet_id}</subnetArn>
                <state>available</state>
                <ownerId>{OWNER}</ownerId>
                <vpcId>{vpc_id}</vpcId>
                <cidrBlock>10.{i % 256}.{j % 256}.0/24</cidrBlock>
                <ipv6CidrBlockAssociationSet/>
                <availableIpAddressCount>{251 - (i + j) % 50}</availableIpAddressCount>
                <availabilityZone>{az}</availabilityZone>
                <availabilityZoneId>{az_id}</availabilityZoneId>
                <defaultForAz>false</defaultForAz>
                <mapPublicIpOnLaunch>{'true' if public else 'false'}</mapPublicIpOnLaunch>
                <assignIpv6AddressOnCreation>false</assignIpv6AddressOnCreation>
                <mapCustomerOwnedIpOnLaunch>false</mapCustomerOwnedIpOnLaunch>
                <enableDns64>false</enableDns64>
                <ipv6Native>false</ipv6Native>
                <privateDnsNameOptionsOnLaunch>
                    <hostnameType>ip-name</hostnameType>
                    <enableResourceNameDnsARecord>false</enableResourceNameDnsARecord>
                    <enableResourceNameDnsAAAARecord>false</enableResourceNameDnsAAAARecord>
                </privateDnsNameOptionsOnLaunch>
                {_tags(f"vpc-{i}-{'public' if public else 'private'}-{j}", {'tier': 'public' if public else 'private'})}
                <blockPublicAccessStates><internetGatewayBlockMode>off</internetGatewayBlockMode></blockPublicAccessStates>
            </item>""".encode()


def _route(dest: str, target_tag: str, target: str, origin: str = "CreateRoute") -> str:
    dest_tag = "destinationIpv6CidrBlock" if ":" in dest else "destinationCidrBlock"
    return (f"<item><{dest_tag}>{dest}</{dest_tag}><{target_tag}>{target}</{target_tag}>"
            f"<state>active</state><origin>{origin}</origin></item>")


def _table(i: int, k: int, vpc_id: str, table_id: str, subnet_ids: list[str]) -> bytes:
    main = k == 0
    routes = [
        _route(f"10.{i % 256}.0.0/16", "gatewayId", "local", "CreateRouteTable"),
        _route(f"2600:1f14:{i:x}:ab00::/56", "gatewayId", "local", "CreateRouteTable"),
        _route("0.0.0.0/0", "gatewayId", _hex("igw-", i)) if k % 2 == 0
        else _route("0.0.0.0/0", "natGatewayId", _hex("nat-", i, k)),
        _route("172.16.0.0/12", "vpcPeeringConnectionId", _hex("pcx-", i)),
    ]
    assocs = []
    if main:
        assocs.append(f"<item><routeTableAssociationId>{_hex('rtbassoc-', i, k, 'main')}</routeTableAssociationId>"
                      f"<routeTableId>{table_id}</routeTableId><main>true</main>"
                      f"<associationState><state>associated</state></associationState></item>")
    for s in subnet_ids:
        assocs.append(f"<item><routeTableAssociationId>{_hex('rtbassoc-', s)}</routeTableAssociationId>"
                      f"<routeTableId>{table_id}</routeTableId><subnetId>{s}</subnetId><main>false</main>"
                      f"<associationState><state>associated</state></associationState></item>")
    return f"""<item>
                <routeTableId>{table_id}</routeTableId>
                <vpcId>{vpc_id}</vpcId>
                <ownerId>{OWNER}</ownerId>
                <routeSet>{''.join(routes)}</routeSet>
                <associationSet>{''.join(assocs)}</associationSet>
                <propagatingVgwSet/>
                {_tags(f'vpc-{i}-rt-{k}')}
            </item>""".encode()


class Dataset:
    """An account with `subnets` subnets over max(10, subnets/100) VPCs, one main route table per VPC and
    one more per 10 subnets (each associated with its 10 subnets), four routes each."""

    def __init__(self, subnets: int):
        self.subnets = subnets
        self.vpcs = max(10, subnets // 100)
        per_vpc = [subnets // self.vpcs + (1 if v < subnets % self.vpcs else 0) for v in range(self.vpcs)]
        self.items: dict[str, list[bytes]] = {a: [] for a in ACTIONS}
        for i in range(self.vpcs):
            vpc_id = _hex("vpc-", i)
            self.items["DescribeVpcs"].append(_vpc(i, vpc_id))
            subnet_ids = [_hex("subnet-", i, j) for j in range(per_vpc[i])]
            for j, sid in enumerate(subnet_ids):
                self.items["DescribeSubnets"].append(_subnet(i, j, vpc_id, sid))
            groups = [subnet_ids[g:g + 10] for g in range(0, len(subnet_ids), 10)]
            self.items["DescribeRouteTables"].append(_table(i, 0, vpc_id, _hex("rtb-", i, 0), []))
            for k, group in enumerate(groups, start=1):
                self.items["DescribeRouteTables"].append(_table(i, k, vpc_id, _hex("rtb-", i, k), group))
        self.route_tables = len(self.items["DescribeRouteTables"])
        self._pages: dict[tuple[str, int], tuple[list[tuple[bytes, bytes]], dict[str, int]]] = {}
        self._lock = threading.Lock()

    def pages(self, action: str, max_results: int):
        """Rendered pages (head, tail) around the requestId, and the token -> page index map."""
        key = (action, max_results)
        with self._lock:
            if key not in self._pages:
                self._pages[key] = self._render(action, max_results)
            return self._pages[key]

    def _render(self, action: str, max_results: int):
        set_name = ACTIONS[action][0]
        items = self.items[action]
        chunks = [items[i:i + max_results] for i in range(0, len(items), max_results)] or [[]]
        tokens = [
            base64.b64encode(hashlib.sha512(f"{action}/{max_results}/{n}/{self.subnets}".encode()).digest()
                             + hashlib.sha256(f"{n}".encode()).digest()).decode()
            for n in range(len(chunks))
        ]
        rendered = []
        for n, chunk in enumerate(chunks):
            head = (f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response xmlns="{EC2_NS}">\n'
                    f"    <requestId>").encode()
            tail = (b"</requestId>\n    <" + set_name.encode() + b">\n            " + b"\n            ".join(chunk)
                    + b"\n    </" + set_name.encode() + b">\n")
            if n + 1 < len(chunks):
                tail += f"    <nextToken>{tokens[n + 1]}</nextToken>\n".encode()
            tail += f"</{action}Response>".encode()
            rendered.append((head, tail))
        return rendered, {t: n for n, t in enumerate(tokens) if n > 0}

    def warm(self, sizes=(("DescribeVpcs", 1000), ("DescribeSubnets", 1000), ("DescribeRouteTables", 100))):
        for action, m in sizes:
            self.pages(action, m)


@dataclass
class Request:
    start: float
    end: float
    service: str
    action: str
    status: int
    request_bytes: int
    response_bytes: int
    message_bytes: int = 0  # SNS: the Message's UTF-8 size
    part: str | None = None  # SNS: the "part" message attribute


def _error(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>").encode()


class FakeAws:
    def __init__(self, dataset: Dataset, host: str = "127.0.0.1"):
        self.dataset = dataset
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        aws = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                start = time.perf_counter()
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                form = {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
                action = form.get("Action", "")
                rec = Request(start, 0.0, "ec2", action, 200, len(raw), 0)
                if action in ACTIONS:
                    status, chunks = aws._describe(action, form)
                elif action == "Publish":
                    rec.service = "sns"
                    status, chunks = aws._publish(form, rec)
                else:
                    status, chunks = 400, [_error("InvalidAction", f"The action {action} is not valid")]
                size = sum(map(len, chunks))
                self.send_response(status)
                self.send_header("Content-Type", "text/xml;charset=UTF-8")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                for c in chunks:
                    self.wfile.write(c)
                self.wfile.flush()
                rec.status, rec.response_bytes, rec.end = status, size, time.perf_counter()
                with aws._lock:
                    aws.requests.append(rec)

        self._server = QuietServer((host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _describe(self, action: str, form: dict):
        _, low, high = ACTIONS[action]
        try:
            max_results = int(form.get("MaxResults", "1000"))
        except ValueError:
            return 400, [_error("InvalidParameterValue", "MaxResults must be an integer")]
        if not low <= max_results <= high:
            return 400, [_error("InvalidParameterValue",
                                f"Value ( {max_results} ) for parameter maxResults is invalid. "
                                f"Expecting a value between {low} and {high}.")]
        pages, tokens = self.dataset.pages(action, max_results)
        token = form.get("NextToken")
        if token:
            if token not in tokens:
                return 400, [_error("InvalidNextToken", "The token is invalid")]
            head, tail = pages[tokens[token]]
        else:
            head, tail = pages[0]
        return 200, [head, str(uuid.uuid4()).encode(), tail]

    def _publish(self, form: dict, rec: Request):
        if not form.get("TopicArn", "").startswith("arn:aws:sns:") or "Message" not in form:
            return 400, [_error("InvalidParameter", "TopicArn and Message are required")]
        rec.message_bytes = len(form["Message"].encode())
        for k, v in form.items():
            if k.startswith("MessageAttributes.entry.") and k.endswith(".Name") and v == "part":
                rec.part = form.get(k[: -len("Name")] + "Value.StringValue")
        if rec.message_bytes > 256 * 1024:
            return 400, [_error("InvalidParameter", "Invalid parameter: Message too long")]
        body = (f'<PublishResponse xmlns="{SNS_NS}"><PublishResult><MessageId>{uuid.uuid4()}</MessageId>'
                f"</PublishResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
                f"</PublishResponse>").encode()
        return 200, [body]

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeAws":
        self._thread.start()
        return self

    def between(self, t0: float, t1: float) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.start >= t0 and r.start <= t1]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
