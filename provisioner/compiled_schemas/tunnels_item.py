"""Generated from schemas/inventory.schema.json by `make validators` (provisioner/schema.py): do not edit."""
# ruff: noqa
SCHEMA_DIGEST = '59ce0da1583be36e3013737fef19fcf5506b19013656ef557e7e01675771f1fe'
VERSION = "2.22.3"
class Decimal:  # never in the data
    pass
import re
class JsonSchemaValueException(ValueError):
    def __init__(self, message, value=None, name=None, definition=None, rule=None):
        super().__init__(message)
        self.message, self.value, self.name, self.definition, self.rule = message, value, name, definition, rule


JsonSchemaValuesException = JsonSchemaValueException


class _Patterns(dict):
    def __missing__(self, pattern):
        self[pattern] = compiled = re.compile(_PATTERN_SOURCES[pattern])
        return compiled


_PATTERN_SOURCES = {
    '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\\Z',
    '^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$': '^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=\\Z',
}
REGEX_PATTERNS = _Patterns()

NoneType = type(None)

def validate_https___provision_invalid_schemas_inventory_schema_json(data, custom_formats={}, name_prefix=None):
    validate_https___provision_invalid_schemas_inventory_schema_json___defs_network_properties_tunnels_items(data, custom_formats, (name_prefix or "data") + "")
    return data

def validate_https___provision_invalid_schemas_inventory_schema_json___defs_network_properties_tunnels_items(data, custom_formats={}, name_prefix=None):
    if not isinstance(data, (dict)):
        raise JsonSchemaValueException("" + (name_prefix or "data") + " must be object", value=data, name="" + (name_prefix or "data") + "", definition={'description': 'A userspace tunnel: a forwarder carries the packets of a tun/tap device of this host to another host, keyed by name. Give exactly one of peer, listen, connect.', 'type': 'object', 'additionalProperties': False, 'required': ['name', 'device'], 'properties': {'name': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': "Unique on the host: letters, digits, '_', '.', '-' (at most 64)."}, 'device': {'type': 'string', 'minLength': 1, 'description': 'A tun/tap device declared on this host.'}, 'peer': {'type': 'string', 'minLength': 1, 'description': 'The inventory host at the other end; it declares a tunnel of the same name with peer: this host. Of the two, the host whose name sorts first listens, the other connects to its tunnel_address (or ansible_host).'}, 'listen': {'type': 'string', 'description': 'ADDRESS:PORT to listen on ([ADDRESS]:PORT for IPv6), instead of peer.'}, 'connect': {'type': 'string', 'description': 'HOST:PORT to connect to, instead of peer.'}, 'transport': {'enum': ['tcp', 'udp'], 'default': 'tcp'}, 'port': {'type': 'integer', 'minimum': 1, 'maximum': 65535, 'description': 'With peer: the port the listening side binds; the same on both ends.'}, 'public_key': {'type': 'string', 'pattern': '^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$', 'description': "With listen/connect: the public key of the other end (base64), e.g. a stock WireGuard peer's. With peer: it is the peer host's tunnel_public_key instead."}, 'psk_file': {'type': 'string', 'minLength': 1, 'description': 'An optional pre-shared key mixed into the handshake (32 random bytes in base64, from `provision keygen --psk PATH` or `wg genpsk`), mode 0600; the same key on both ends. Relative paths are relative to the inventory file.'}, 'key_file': {'description': 'The old shared-key form: no longer accepted (validate says what to write instead: see docs/keys.md).'}, 'insecure': {'type': 'boolean', 'default': False, 'description': 'true: no keys, no encryption, no authentication (anyone who reaches the port joins the tunnel). plan and validate warn about it.'}, 'compress': {'type': 'boolean', 'default': False, 'description': 'Compress units with lz4 before encrypting them, when both ends ask for it and a unit shrinks.'}, 'user': {'type': ['string', 'integer'], 'description': 'Run the forwarder as this user (name or uid; never root or 0) once its device and socket are open; the device is then owned by this user. Default: provision-tunnel, a system user provision creates.'}, 'group': {'type': ['string', 'integer'], 'description': "With user: the forwarder's group (name or gid; never root or 0); default the user's primary group. The device's group too."}}}, rule='type')
    data_is_dict = isinstance(data, dict)
    if data_is_dict:
        data__missing_keys = set(['name', 'device']) - data.keys()
        if data__missing_keys:
            raise JsonSchemaValueException("" + (name_prefix or "data") + " must contain " + (str(sorted(data__missing_keys)) + " properties"), value=data, name="" + (name_prefix or "data") + "", definition={'description': 'A userspace tunnel: a forwarder carries the packets of a tun/tap device of this host to another host, keyed by name. Give exactly one of peer, listen, connect.', 'type': 'object', 'additionalProperties': False, 'required': ['name', 'device'], 'properties': {'name': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': "Unique on the host: letters, digits, '_', '.', '-' (at most 64)."}, 'device': {'type': 'string', 'minLength': 1, 'description': 'A tun/tap device declared on this host.'}, 'peer': {'type': 'string', 'minLength': 1, 'description': 'The inventory host at the other end; it declares a tunnel of the same name with peer: this host. Of the two, the host whose name sorts first listens, the other connects to its tunnel_address (or ansible_host).'}, 'listen': {'type': 'string', 'description': 'ADDRESS:PORT to listen on ([ADDRESS]:PORT for IPv6), instead of peer.'}, 'connect': {'type': 'string', 'description': 'HOST:PORT to connect to, instead of peer.'}, 'transport': {'enum': ['tcp', 'udp'], 'default': 'tcp'}, 'port': {'type': 'integer', 'minimum': 1, 'maximum': 65535, 'description': 'With peer: the port the listening side binds; the same on both ends.'}, 'public_key': {'type': 'string', 'pattern': '^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$', 'description': "With listen/connect: the public key of the other end (base64), e.g. a stock WireGuard peer's. With peer: it is the peer host's tunnel_public_key instead."}, 'psk_file': {'type': 'string', 'minLength': 1, 'description': 'An optional pre-shared key mixed into the handshake (32 random bytes in base64, from `provision keygen --psk PATH` or `wg genpsk`), mode 0600; the same key on both ends. Relative paths are relative to the inventory file.'}, 'key_file': {'description': 'The old shared-key form: no longer accepted (validate says what to write instead: see docs/keys.md).'}, 'insecure': {'type': 'boolean', 'default': False, 'description': 'true: no keys, no encryption, no authentication (anyone who reaches the port joins the tunnel). plan and validate warn about it.'}, 'compress': {'type': 'boolean', 'default': False, 'description': 'Compress units with lz4 before encrypting them, when both ends ask for it and a unit shrinks.'}, 'user': {'type': ['string', 'integer'], 'description': 'Run the forwarder as this user (name or uid; never root or 0) once its device and socket are open; the device is then owned by this user. Default: provision-tunnel, a system user provision creates.'}, 'group': {'type': ['string', 'integer'], 'description': "With user: the forwarder's group (name or gid; never root or 0); default the user's primary group. The device's group too."}}}, rule='required')
        data_keys = set(data.keys())
        if "name" in data_keys:
            data_keys.remove("name")
            data__name = data["name"]
            if not isinstance(data__name, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".name must be string", value=data__name, name="" + (name_prefix or "data") + ".name", definition={'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': "Unique on the host: letters, digits, '_', '.', '-' (at most 64)."}, rule='type')
            if isinstance(data__name, str):
                if not REGEX_PATTERNS['^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'].search(data__name):
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".name must match pattern ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", value=data__name, name="" + (name_prefix or "data") + ".name", definition={'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': "Unique on the host: letters, digits, '_', '.', '-' (at most 64)."}, rule='pattern')
        if "device" in data_keys:
            data_keys.remove("device")
            data__device = data["device"]
            if not isinstance(data__device, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".device must be string", value=data__device, name="" + (name_prefix or "data") + ".device", definition={'type': 'string', 'minLength': 1, 'description': 'A tun/tap device declared on this host.'}, rule='type')
            if isinstance(data__device, str):
                data__device_len = len(data__device)
                if data__device_len < 1:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".device must be longer than or equal to 1 characters", value=data__device, name="" + (name_prefix or "data") + ".device", definition={'type': 'string', 'minLength': 1, 'description': 'A tun/tap device declared on this host.'}, rule='minLength')
        if "peer" in data_keys:
            data_keys.remove("peer")
            data__peer = data["peer"]
            if not isinstance(data__peer, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".peer must be string", value=data__peer, name="" + (name_prefix or "data") + ".peer", definition={'type': 'string', 'minLength': 1, 'description': 'The inventory host at the other end; it declares a tunnel of the same name with peer: this host. Of the two, the host whose name sorts first listens, the other connects to its tunnel_address (or ansible_host).'}, rule='type')
            if isinstance(data__peer, str):
                data__peer_len = len(data__peer)
                if data__peer_len < 1:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".peer must be longer than or equal to 1 characters", value=data__peer, name="" + (name_prefix or "data") + ".peer", definition={'type': 'string', 'minLength': 1, 'description': 'The inventory host at the other end; it declares a tunnel of the same name with peer: this host. Of the two, the host whose name sorts first listens, the other connects to its tunnel_address (or ansible_host).'}, rule='minLength')
        if "listen" in data_keys:
            data_keys.remove("listen")
            data__listen = data["listen"]
            if not isinstance(data__listen, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".listen must be string", value=data__listen, name="" + (name_prefix or "data") + ".listen", definition={'type': 'string', 'description': 'ADDRESS:PORT to listen on ([ADDRESS]:PORT for IPv6), instead of peer.'}, rule='type')
        if "connect" in data_keys:
            data_keys.remove("connect")
            data__connect = data["connect"]
            if not isinstance(data__connect, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".connect must be string", value=data__connect, name="" + (name_prefix or "data") + ".connect", definition={'type': 'string', 'description': 'HOST:PORT to connect to, instead of peer.'}, rule='type')
        if "transport" in data_keys:
            data_keys.remove("transport")
            data__transport = data["transport"]
            if not (isinstance(data__transport, str) and data__transport == 'tcp' or isinstance(data__transport, str) and data__transport == 'udp'):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".transport must be one of ['tcp', 'udp']", value=data__transport, name="" + (name_prefix or "data") + ".transport", definition={'enum': ['tcp', 'udp'], 'default': 'tcp'}, rule='enum')
        if "port" in data_keys:
            data_keys.remove("port")
            data__port = data["port"]
            if not isinstance(data__port, (int)) and not (isinstance(data__port, float) and data__port.is_integer()) or isinstance(data__port, bool):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".port must be integer", value=data__port, name="" + (name_prefix or "data") + ".port", definition={'type': 'integer', 'minimum': 1, 'maximum': 65535, 'description': 'With peer: the port the listening side binds; the same on both ends.'}, rule='type')
            if isinstance(data__port, (int, float, Decimal)) and not isinstance(data__port, bool):
                if data__port < 1:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".port must be bigger than or equal to 1", value=data__port, name="" + (name_prefix or "data") + ".port", definition={'type': 'integer', 'minimum': 1, 'maximum': 65535, 'description': 'With peer: the port the listening side binds; the same on both ends.'}, rule='minimum')
                if data__port > 65535:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".port must be smaller than or equal to 65535", value=data__port, name="" + (name_prefix or "data") + ".port", definition={'type': 'integer', 'minimum': 1, 'maximum': 65535, 'description': 'With peer: the port the listening side binds; the same on both ends.'}, rule='maximum')
        if "public_key" in data_keys:
            data_keys.remove("public_key")
            data__publickey = data["public_key"]
            if not isinstance(data__publickey, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".public_key must be string", value=data__publickey, name="" + (name_prefix or "data") + ".public_key", definition={'type': 'string', 'pattern': '^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$', 'description': "With listen/connect: the public key of the other end (base64), e.g. a stock WireGuard peer's. With peer: it is the peer host's tunnel_public_key instead."}, rule='type')
            if isinstance(data__publickey, str):
                if not REGEX_PATTERNS['^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$'].search(data__publickey):
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".public_key must match pattern ^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$", value=data__publickey, name="" + (name_prefix or "data") + ".public_key", definition={'type': 'string', 'pattern': '^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$', 'description': "With listen/connect: the public key of the other end (base64), e.g. a stock WireGuard peer's. With peer: it is the peer host's tunnel_public_key instead."}, rule='pattern')
        if "psk_file" in data_keys:
            data_keys.remove("psk_file")
            data__pskfile = data["psk_file"]
            if not isinstance(data__pskfile, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".psk_file must be string", value=data__pskfile, name="" + (name_prefix or "data") + ".psk_file", definition={'type': 'string', 'minLength': 1, 'description': 'An optional pre-shared key mixed into the handshake (32 random bytes in base64, from `provision keygen --psk PATH` or `wg genpsk`), mode 0600; the same key on both ends. Relative paths are relative to the inventory file.'}, rule='type')
            if isinstance(data__pskfile, str):
                data__pskfile_len = len(data__pskfile)
                if data__pskfile_len < 1:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".psk_file must be longer than or equal to 1 characters", value=data__pskfile, name="" + (name_prefix or "data") + ".psk_file", definition={'type': 'string', 'minLength': 1, 'description': 'An optional pre-shared key mixed into the handshake (32 random bytes in base64, from `provision keygen --psk PATH` or `wg genpsk`), mode 0600; the same key on both ends. Relative paths are relative to the inventory file.'}, rule='minLength')
        if "key_file" in data_keys:
            data_keys.remove("key_file")
            data__keyfile = data["key_file"]
        if "insecure" in data_keys:
            data_keys.remove("insecure")
            data__insecure = data["insecure"]
            if not isinstance(data__insecure, (bool)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".insecure must be boolean", value=data__insecure, name="" + (name_prefix or "data") + ".insecure", definition={'type': 'boolean', 'default': False, 'description': 'true: no keys, no encryption, no authentication (anyone who reaches the port joins the tunnel). plan and validate warn about it.'}, rule='type')
        if "compress" in data_keys:
            data_keys.remove("compress")
            data__compress = data["compress"]
            if not isinstance(data__compress, (bool)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".compress must be boolean", value=data__compress, name="" + (name_prefix or "data") + ".compress", definition={'type': 'boolean', 'default': False, 'description': 'Compress units with lz4 before encrypting them, when both ends ask for it and a unit shrinks.'}, rule='type')
        if "user" in data_keys:
            data_keys.remove("user")
            data__user = data["user"]
            if not isinstance(data__user, (str, int)) and not (isinstance(data__user, float) and data__user.is_integer()) or isinstance(data__user, bool):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".user must be string or integer", value=data__user, name="" + (name_prefix or "data") + ".user", definition={'type': ['string', 'integer'], 'description': 'Run the forwarder as this user (name or uid; never root or 0) once its device and socket are open; the device is then owned by this user. Default: provision-tunnel, a system user provision creates.'}, rule='type')
        if "group" in data_keys:
            data_keys.remove("group")
            data__group = data["group"]
            if not isinstance(data__group, (str, int)) and not (isinstance(data__group, float) and data__group.is_integer()) or isinstance(data__group, bool):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".group must be string or integer", value=data__group, name="" + (name_prefix or "data") + ".group", definition={'type': ['string', 'integer'], 'description': "With user: the forwarder's group (name or gid; never root or 0); default the user's primary group. The device's group too."}, rule='type')
        if data_keys:
            raise JsonSchemaValueException("" + (name_prefix or "data") + " must not contain "+str(data_keys)+" properties", value=data, name="" + (name_prefix or "data") + "", definition={'description': 'A userspace tunnel: a forwarder carries the packets of a tun/tap device of this host to another host, keyed by name. Give exactly one of peer, listen, connect.', 'type': 'object', 'additionalProperties': False, 'required': ['name', 'device'], 'properties': {'name': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': "Unique on the host: letters, digits, '_', '.', '-' (at most 64)."}, 'device': {'type': 'string', 'minLength': 1, 'description': 'A tun/tap device declared on this host.'}, 'peer': {'type': 'string', 'minLength': 1, 'description': 'The inventory host at the other end; it declares a tunnel of the same name with peer: this host. Of the two, the host whose name sorts first listens, the other connects to its tunnel_address (or ansible_host).'}, 'listen': {'type': 'string', 'description': 'ADDRESS:PORT to listen on ([ADDRESS]:PORT for IPv6), instead of peer.'}, 'connect': {'type': 'string', 'description': 'HOST:PORT to connect to, instead of peer.'}, 'transport': {'enum': ['tcp', 'udp'], 'default': 'tcp'}, 'port': {'type': 'integer', 'minimum': 1, 'maximum': 65535, 'description': 'With peer: the port the listening side binds; the same on both ends.'}, 'public_key': {'type': 'string', 'pattern': '^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$', 'description': "With listen/connect: the public key of the other end (base64), e.g. a stock WireGuard peer's. With peer: it is the peer host's tunnel_public_key instead."}, 'psk_file': {'type': 'string', 'minLength': 1, 'description': 'An optional pre-shared key mixed into the handshake (32 random bytes in base64, from `provision keygen --psk PATH` or `wg genpsk`), mode 0600; the same key on both ends. Relative paths are relative to the inventory file.'}, 'key_file': {'description': 'The old shared-key form: no longer accepted (validate says what to write instead: see docs/keys.md).'}, 'insecure': {'type': 'boolean', 'default': False, 'description': 'true: no keys, no encryption, no authentication (anyone who reaches the port joins the tunnel). plan and validate warn about it.'}, 'compress': {'type': 'boolean', 'default': False, 'description': 'Compress units with lz4 before encrypting them, when both ends ask for it and a unit shrinks.'}, 'user': {'type': ['string', 'integer'], 'description': 'Run the forwarder as this user (name or uid; never root or 0) once its device and socket are open; the device is then owned by this user. Default: provision-tunnel, a system user provision creates.'}, 'group': {'type': ['string', 'integer'], 'description': "With user: the forwarder's group (name or gid; never root or 0); default the user's primary group. The device's group too."}}}, rule='additionalProperties')
    return data

validate = validate_https___provision_invalid_schemas_inventory_schema_json
