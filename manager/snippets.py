"""Connection examples, filled in with this deployment's endpoints.

SKILL.md shows them as they are; the console replaces `USERNAME` and `PASSWORD` (the two
placeholders below) with the instance's credentials in the page. Instance ids and
passwords are hex and base64url, so they are safe inside every quote used here.
"""

from __future__ import annotations

from dataclasses import dataclass

from manager.endpoints import Endpoints

USERNAME = "<instance_id>"
PASSWORD = "<password>"  # noqa: S105 - a placeholder, not a password


@dataclass(frozen=True)
class Snippet:
    key: str  # a stable id (the console's element ids)
    title: str
    language: str  # the Markdown fence: sh, python, js
    text: str


def _mqttx(e: Endpoints) -> str:
    wss = f"-h {e.host} -p {e.wss_port} -l {e.wss_scheme} --path {e.wss_path}"
    auth = f"-u '{USERNAME}' -P '{PASSWORD}'"
    return (
        f"mqttx sub -h {e.host} -p {e.mqtts_port} -l mqtts {auth} -i sub-1 -t 'sensors/#'\n"
        f"mqttx pub -h {e.host} -p {e.mqtts_port} -l mqtts {auth} -i pub-1 -t sensors/1 -m 21.5\n"
        f"mqttx sub {wss} {auth} -i ws-1 -t 'sensors/#'"
    )


def _mosquitto(e: Endpoints) -> str:
    common = f"-h {e.host} -p {e.mqtts_port} --tls-use-os-certs -u '{USERNAME}' -P '{PASSWORD}'"
    return (
        f"mosquitto_sub {common} -i sub-1 -t 'sensors/#' -v\n"
        f"mosquitto_pub {common} -i pub-1 -t sensors/1 -m 21.5"
    )


def _paho(e: Endpoints) -> str:
    return f"""\
# pip install paho-mqtt   (2.x)
import paho.mqtt.client as mqtt

def on_connect(client, userdata, flags, reason_code, properties):
    client.subscribe("sensors/#")
    client.publish("sensors/1", "21.5")

client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="py-1", protocol=mqtt.MQTTv5)
client.username_pw_set("{USERNAME}", "{PASSWORD}")
client.tls_set()  # verify the broker against the system's CA store
client.on_connect = on_connect
client.on_message = lambda client, userdata, msg: print(msg.topic, msg.payload.decode())
client.connect("{e.host}", {e.mqtts_port})
client.loop_forever()"""


def _mqttjs(e: Endpoints) -> str:
    return f"""\
// npm install mqtt@5   (Node.js, or a browser bundle)
const mqtt = require("mqtt");

const client = mqtt.connect("{e.wss_uri}", {{
  username: "{USERNAME}",
  password: "{PASSWORD}",
  clientId: "js-1",
}});
client.on("connect", () => {{
  client.subscribe("sensors/#");
  client.publish("sensors/1", "21.5");
}});
client.on("message", (topic, payload) => console.log(topic, payload.toString()));"""


def self_service_snippet(base_url: str) -> Snippet:
    """Inspect, rotate and delete with the instance's own credentials (curl)."""
    base = f"{base_url}/v1/instances/$U"
    calls = (
        (f'curl -s -u "$U:$P" {base}', "state, expiry, limits, usage"),
        (f'curl -s -u "$U:$P" -X POST {base}/rotate-credentials', "a new password, once"),
        (f'curl -s -u "$U:$P" -X DELETE {base}', "204: revoked now"),
    )
    width = max(len(command) for command, _ in calls)
    lines = [f"U='{USERNAME}' P='{PASSWORD}'"]
    lines += [f"{command.ljust(width)}  # {comment}" for command, comment in calls]
    text = "\n".join(lines)
    return Snippet("self-service", "Self-service (curl)", "sh", text)


def connection_snippets(endpoints: Endpoints) -> tuple[Snippet, ...]:
    return (
        Snippet("mqttx", "MQTTX CLI", "sh", _mqttx(endpoints)),
        Snippet("mosquitto", "mosquitto_sub / mosquitto_pub", "sh", _mosquitto(endpoints)),
        Snippet("paho", "Python (paho-mqtt)", "python", _paho(endpoints)),
        Snippet("mqttjs", "JavaScript (mqtt.js)", "js", _mqttjs(endpoints)),
    )
