"""Publish classifications to an MQTT broker (paho-mqtt), for robots that listen on a topic."""
from __future__ import annotations

import json

from edge.errors import UserError
from edge.runners import require


class MqttPublisher:
    def __init__(self, address: str, topic: str, timeout: float = 5.0):
        mqtt = require("paho.mqtt.client", "paho-mqtt", "--mqtt")
        host, _, port = address.partition(":")
        self.topic = topic
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311)
        try:
            self.client.connect(host or "localhost", int(port or 1883), keepalive=30)
        except (OSError, ValueError) as e:
            raise UserError(f"cannot reach the MQTT broker at {address} ({e}); is it running (mosquitto)?") from None
        self.client.loop_start()

    def publish(self, record: dict) -> None:
        self.client.publish(self.topic, json.dumps(record), qos=0)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
