"""Publish classifications to an MQTT broker (paho-mqtt), for robots that listen on a topic.

A broker with logins and TLS: the user name and password come from the environment
(MQTT_USERNAME, MQTT_PASSWORD) or the password from a file, never from the command line,
where `ps` shows it to every user of the board. The connection is checked once at start-up
(the broker's answer awaited), so a wrong password or CA is one line, not silent loss.
"""
from __future__ import annotations

import json
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from edge.errors import UserError
from edge.runners import require

NO_LOGIN = (134, 135)  # MQTT reason codes: bad user name or password, not authorized


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int
    topic: str
    username: str | None = None
    password: str | None = None
    ca: str | None = None  # the CA that signed the broker's certificate: TLS
    cert: str | None = None  # this client's certificate and key, for a broker that asks for one
    key: str | None = None

    @property
    def tls(self) -> bool:
        return bool(self.ca or self.cert)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_args(cls, args, env=os.environ) -> "MqttSettings":
        """--mqtt HOST[:PORT] and its options, MQTT_USERNAME and MQTT_PASSWORD; each mistake one line."""
        for flag, path in (("--mqtt-ca", args.mqtt_ca), ("--mqtt-cert", args.mqtt_cert), ("--mqtt-key", args.mqtt_key),
                           ("--mqtt-password-file", args.mqtt_password_file)):
            if path and not Path(path).is_file():
                raise UserError(f"{flag} {path}: no such file")
        if bool(args.mqtt_cert) != bool(args.mqtt_key):
            raise UserError("--mqtt-cert and --mqtt-key go together: the client certificate and its private key")
        tls = bool(args.mqtt_ca or args.mqtt_cert)
        host, _, port = args.mqtt.partition(":")
        if port and not port.isdigit():
            raise UserError(f"--mqtt {args.mqtt}: the port must be a number, e.g. --mqtt {host or 'localhost'}:{8883 if tls else 1883}")
        password = env.get("MQTT_PASSWORD") or None
        if args.mqtt_password_file:  # its first line, so a trailing newline is not part of the password
            lines = Path(args.mqtt_password_file).read_text().splitlines()
            password = lines[0] if lines else ""
        username = env.get("MQTT_USERNAME") or None
        if password is not None and not username:
            raise UserError("an MQTT password needs a user name: set MQTT_USERNAME as well")
        return cls(host or "localhost", int(port or (8883 if tls else 1883)), args.mqtt_topic, username, password,
                   args.mqtt_ca, args.mqtt_cert, args.mqtt_key)


class MqttPublisher:
    def __init__(self, settings: MqttSettings, timeout: float = 5.0):
        mqtt = require("paho.mqtt.client", "paho-mqtt", "--mqtt")
        self.settings, self.topic = settings, settings.topic
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311)
        if settings.username:
            self.client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            try:
                self.client.tls_set(ca_certs=settings.ca, certfile=settings.cert, keyfile=settings.key)
            except (ssl.SSLError, OSError) as e:
                raise UserError(f"cannot load the MQTT TLS files ({e}); --mqtt-ca, --mqtt-cert and --mqtt-key take PEM files") from None
        answer, answered = {}, threading.Event()
        self.client.on_connect = lambda c, u, flags, rc, props: (answer.setdefault("rc", rc), answered.set())
        self.client.on_disconnect = lambda c, u, flags, rc, props: (answer.setdefault("closed", rc), answered.set())
        try:
            self.client.connect(settings.host, settings.port, keepalive=30)
        except ssl.SSLError as e:  # before OSError, which it is too
            raise UserError(f"TLS with the MQTT broker at {settings.address} failed ({e.reason or e}); "
                            "pass the CA that signed its certificate with --mqtt-ca FILE") from None
        except (OSError, ValueError) as e:
            hint = "is it running, and is this its TLS port?" if settings.tls else "is it running (mosquitto)?"
            raise UserError(f"cannot reach the MQTT broker at {settings.address} ({e}); {hint}") from None
        self.client.loop_start()
        answered.wait(timeout)
        if answer.get("rc") is None or answer["rc"].is_failure:
            self.close()
            raise UserError(self._refusal(answer, timeout))

    def _refusal(self, answer: dict, timeout: float) -> str:
        """Why the broker did not accept this client, and what to change."""
        s, rc = self.settings, answer.get("rc")
        where = f"the MQTT broker at {s.address}"
        if rc is not None and rc.value in NO_LOGIN:
            if not s.username:
                return f"{where} wants a login ({rc}): set MQTT_USERNAME and MQTT_PASSWORD (or --mqtt-password-file FILE)"
            return f"{where} refused the login of {s.username!r} ({rc}): check MQTT_USERNAME and MQTT_PASSWORD (or --mqtt-password-file)"
        if rc is not None:
            return f"{where} refused the connection ({rc})"
        hint = ("is it the broker's TLS port" + ("?" if s.cert else ", and does it want a client certificate (--mqtt-cert, --mqtt-key)?")
                if s.tls else "if it is a TLS listener, pass --mqtt-ca FILE")
        if "closed" in answer:
            return f"{where} closed the connection without accepting it: {hint}"
        return f"{where} did not answer in {timeout:.0f} s: {hint}"

    def publish(self, record: dict) -> None:
        self.client.publish(self.topic, json.dumps(record), qos=0)

    def alert(self, topic: str, record: dict) -> None:
        """An alert is rare and meant to be seen: QoS 1 (the broker acknowledges it), waited for briefly."""
        self.client.publish(topic, json.dumps(record), qos=1).wait_for_publish(5)

    def retain(self, topic: str, record: dict) -> None:
        """A retained message (the board's status): the broker keeps the last one per topic for later subscribers."""
        self.last_retained = self.client.publish(topic, json.dumps(record), qos=1, retain=True)

    def close(self) -> None:
        last = getattr(self, "last_retained", None)
        if last is not None and not last.is_published():  # the board's last status ("stopped") must reach the broker
            try:
                last.wait_for_publish(5)
            except (RuntimeError, ValueError):
                pass
        self.client.loop_stop()
        self.client.disconnect()
