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
    '^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$': '^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}\\Z',
}
REGEX_PATTERNS = _Patterns()

NoneType = type(None)

def validate_https___provision_invalid_schemas_inventory_schema_json(data, custom_formats={}, name_prefix=None):
    validate_https___provision_invalid_schemas_inventory_schema_json___defs_network_properties_devices_items(data, custom_formats, (name_prefix or "data") + "")
    return data

def validate_https___provision_invalid_schemas_inventory_schema_json___defs_network_properties_devices_items(data, custom_formats={}, name_prefix=None):
    if not isinstance(data, (dict)):
        raise JsonSchemaValueException("" + (name_prefix or "data") + " must be object", value=data, name="" + (name_prefix or "data") + "", definition={'description': 'A tun/tap device, keyed by name. Layers merge by name; a later entry replaces an earlier one whole.', 'type': 'object', 'additionalProperties': False, 'required': ['name'], 'properties': {'name': {'type': 'string', 'minLength': 1, 'description': "Interface name: at most 15 bytes, no white space, '/', ':' or '%'."}, 'type': {'enum': ['tun', 'tap']}, 'state': {'enum': ['up', 'down', 'absent'], 'default': 'up'}, 'mtu': {'type': 'integer', 'minimum': 68, 'maximum': 65535, 'description': 'Left out: not managed; on a device a tunnel names, 1420 over UDP (1395 for a tap) and 1500 over TCP, so the carrier is never fragmented (docs/inventory.md).'}, 'mac': {'type': 'string', 'pattern': '^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$', 'description': 'tap only'}, 'owner': {'type': 'integer', 'minimum': 0, 'maximum': 4294967294}, 'group': {'type': 'integer', 'minimum': 0, 'maximum': 4294967294}, 'pi': {'type': 'boolean', 'default': False}, 'vnet_hdr': {'type': 'boolean', 'description': "The virtio header, for the forwarder's offloads. Left out: false, but true on a device a tunnel names (docs/inventory.md)."}, 'multi_queue': {'type': 'boolean', 'default': False}, 'addresses': {'type': 'array', 'items': {'type': 'string', 'description': 'ADDRESS/PREFIX, IPv4 or IPv6'}}}, 'anyOf': [{'required': ['type']}, {'properties': {'state': {'const': 'absent'}}, 'required': ['state']}]}, rule='type')
    data_any_of_count1 = 0
    if not data_any_of_count1:
        try:
            data_is_dict = isinstance(data, dict)
            if data_is_dict:
                data__missing_keys = set(['type']) - data.keys()
                if data__missing_keys:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + " must contain " + (str(sorted(data__missing_keys)) + " properties"), value=data, name="" + (name_prefix or "data") + "", definition={'required': ['type']}, rule='required')
            data_any_of_count1 += 1
        except (JsonSchemaValueException, JsonSchemaValuesException): pass
    if not data_any_of_count1:
        try:
            data_is_dict = isinstance(data, dict)
            if data_is_dict:
                data__missing_keys = set(['state']) - data.keys()
                if data__missing_keys:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + " must contain " + (str(sorted(data__missing_keys)) + " properties"), value=data, name="" + (name_prefix or "data") + "", definition={'properties': {'state': {'const': 'absent'}}, 'required': ['state']}, rule='required')
                data_keys = set(data.keys())
                if "state" in data_keys:
                    data_keys.remove("state")
                    data__state = data["state"]
                    if not (isinstance(data__state, str) and data__state == 'absent'):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".state must be same as const definition: absent", value=data__state, name="" + (name_prefix or "data") + ".state", definition={'const': 'absent'}, rule='const')
            data_any_of_count1 += 1
        except (JsonSchemaValueException, JsonSchemaValuesException): pass
    if not data_any_of_count1:
        raise JsonSchemaValueException("" + (name_prefix or "data") + " cannot be validated by any definition", value=data, name="" + (name_prefix or "data") + "", definition={'description': 'A tun/tap device, keyed by name. Layers merge by name; a later entry replaces an earlier one whole.', 'type': 'object', 'additionalProperties': False, 'required': ['name'], 'properties': {'name': {'type': 'string', 'minLength': 1, 'description': "Interface name: at most 15 bytes, no white space, '/', ':' or '%'."}, 'type': {'enum': ['tun', 'tap']}, 'state': {'enum': ['up', 'down', 'absent'], 'default': 'up'}, 'mtu': {'type': 'integer', 'minimum': 68, 'maximum': 65535, 'description': 'Left out: not managed; on a device a tunnel names, 1420 over UDP (1395 for a tap) and 1500 over TCP, so the carrier is never fragmented (docs/inventory.md).'}, 'mac': {'type': 'string', 'pattern': '^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$', 'description': 'tap only'}, 'owner': {'type': 'integer', 'minimum': 0, 'maximum': 4294967294}, 'group': {'type': 'integer', 'minimum': 0, 'maximum': 4294967294}, 'pi': {'type': 'boolean', 'default': False}, 'vnet_hdr': {'type': 'boolean', 'description': "The virtio header, for the forwarder's offloads. Left out: false, but true on a device a tunnel names (docs/inventory.md)."}, 'multi_queue': {'type': 'boolean', 'default': False}, 'addresses': {'type': 'array', 'items': {'type': 'string', 'description': 'ADDRESS/PREFIX, IPv4 or IPv6'}}}, 'anyOf': [{'required': ['type']}, {'properties': {'state': {'const': 'absent'}}, 'required': ['state']}]}, rule='anyOf')
    data_is_dict = isinstance(data, dict)
    if data_is_dict:
        data__missing_keys = set(['name']) - data.keys()
        if data__missing_keys:
            raise JsonSchemaValueException("" + (name_prefix or "data") + " must contain " + (str(sorted(data__missing_keys)) + " properties"), value=data, name="" + (name_prefix or "data") + "", definition={'description': 'A tun/tap device, keyed by name. Layers merge by name; a later entry replaces an earlier one whole.', 'type': 'object', 'additionalProperties': False, 'required': ['name'], 'properties': {'name': {'type': 'string', 'minLength': 1, 'description': "Interface name: at most 15 bytes, no white space, '/', ':' or '%'."}, 'type': {'enum': ['tun', 'tap']}, 'state': {'enum': ['up', 'down', 'absent'], 'default': 'up'}, 'mtu': {'type': 'integer', 'minimum': 68, 'maximum': 65535, 'description': 'Left out: not managed; on a device a tunnel names, 1420 over UDP (1395 for a tap) and 1500 over TCP, so the carrier is never fragmented (docs/inventory.md).'}, 'mac': {'type': 'string', 'pattern': '^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$', 'description': 'tap only'}, 'owner': {'type': 'integer', 'minimum': 0, 'maximum': 4294967294}, 'group': {'type': 'integer', 'minimum': 0, 'maximum': 4294967294}, 'pi': {'type': 'boolean', 'default': False}, 'vnet_hdr': {'type': 'boolean', 'description': "The virtio header, for the forwarder's offloads. Left out: false, but true on a device a tunnel names (docs/inventory.md)."}, 'multi_queue': {'type': 'boolean', 'default': False}, 'addresses': {'type': 'array', 'items': {'type': 'string', 'description': 'ADDRESS/PREFIX, IPv4 or IPv6'}}}, 'anyOf': [{'required': ['type']}, {'properties': {'state': {'const': 'absent'}}, 'required': ['state']}]}, rule='required')
        data_keys = set(data.keys())
        if "name" in data_keys:
            data_keys.remove("name")
            data__name = data["name"]
            if not isinstance(data__name, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".name must be string", value=data__name, name="" + (name_prefix or "data") + ".name", definition={'type': 'string', 'minLength': 1, 'description': "Interface name: at most 15 bytes, no white space, '/', ':' or '%'."}, rule='type')
            if isinstance(data__name, str):
                data__name_len = len(data__name)
                if data__name_len < 1:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".name must be longer than or equal to 1 characters", value=data__name, name="" + (name_prefix or "data") + ".name", definition={'type': 'string', 'minLength': 1, 'description': "Interface name: at most 15 bytes, no white space, '/', ':' or '%'."}, rule='minLength')
        if "type" in data_keys:
            data_keys.remove("type")
            data__type = data["type"]
            if not (isinstance(data__type, str) and data__type == 'tun' or isinstance(data__type, str) and data__type == 'tap'):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".type must be one of ['tun', 'tap']", value=data__type, name="" + (name_prefix or "data") + ".type", definition={'enum': ['tun', 'tap']}, rule='enum')
        if "state" in data_keys:
            data_keys.remove("state")
            data__state = data["state"]
            if not (isinstance(data__state, str) and data__state == 'up' or isinstance(data__state, str) and data__state == 'down' or isinstance(data__state, str) and data__state == 'absent'):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".state must be one of ['up', 'down', 'absent']", value=data__state, name="" + (name_prefix or "data") + ".state", definition={'enum': ['up', 'down', 'absent'], 'default': 'up'}, rule='enum')
        if "mtu" in data_keys:
            data_keys.remove("mtu")
            data__mtu = data["mtu"]
            if not isinstance(data__mtu, (int)) and not (isinstance(data__mtu, float) and data__mtu.is_integer()) or isinstance(data__mtu, bool):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".mtu must be integer", value=data__mtu, name="" + (name_prefix or "data") + ".mtu", definition={'type': 'integer', 'minimum': 68, 'maximum': 65535, 'description': 'Left out: not managed; on a device a tunnel names, 1420 over UDP (1395 for a tap) and 1500 over TCP, so the carrier is never fragmented (docs/inventory.md).'}, rule='type')
            if isinstance(data__mtu, (int, float, Decimal)) and not isinstance(data__mtu, bool):
                if data__mtu < 68:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".mtu must be bigger than or equal to 68", value=data__mtu, name="" + (name_prefix or "data") + ".mtu", definition={'type': 'integer', 'minimum': 68, 'maximum': 65535, 'description': 'Left out: not managed; on a device a tunnel names, 1420 over UDP (1395 for a tap) and 1500 over TCP, so the carrier is never fragmented (docs/inventory.md).'}, rule='minimum')
                if data__mtu > 65535:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".mtu must be smaller than or equal to 65535", value=data__mtu, name="" + (name_prefix or "data") + ".mtu", definition={'type': 'integer', 'minimum': 68, 'maximum': 65535, 'description': 'Left out: not managed; on a device a tunnel names, 1420 over UDP (1395 for a tap) and 1500 over TCP, so the carrier is never fragmented (docs/inventory.md).'}, rule='maximum')
        if "mac" in data_keys:
            data_keys.remove("mac")
            data__mac = data["mac"]
            if not isinstance(data__mac, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".mac must be string", value=data__mac, name="" + (name_prefix or "data") + ".mac", definition={'type': 'string', 'pattern': '^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$', 'description': 'tap only'}, rule='type')
            if isinstance(data__mac, str):
                if not REGEX_PATTERNS['^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$'].search(data__mac):
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".mac must match pattern ^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$", value=data__mac, name="" + (name_prefix or "data") + ".mac", definition={'type': 'string', 'pattern': '^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$', 'description': 'tap only'}, rule='pattern')
        if "owner" in data_keys:
            data_keys.remove("owner")
            data__owner = data["owner"]
            if not isinstance(data__owner, (int)) and not (isinstance(data__owner, float) and data__owner.is_integer()) or isinstance(data__owner, bool):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".owner must be integer", value=data__owner, name="" + (name_prefix or "data") + ".owner", definition={'type': 'integer', 'minimum': 0, 'maximum': 4294967294}, rule='type')
            if isinstance(data__owner, (int, float, Decimal)) and not isinstance(data__owner, bool):
                if data__owner < 0:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".owner must be bigger than or equal to 0", value=data__owner, name="" + (name_prefix or "data") + ".owner", definition={'type': 'integer', 'minimum': 0, 'maximum': 4294967294}, rule='minimum')
                if data__owner > 4294967294:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".owner must be smaller than or equal to 4294967294", value=data__owner, name="" + (name_prefix or "data") + ".owner", definition={'type': 'integer', 'minimum': 0, 'maximum': 4294967294}, rule='maximum')
        if "group" in data_keys:
            data_keys.remove("group")
            data__group = data["group"]
            if not isinstance(data__group, (int)) and not (isinstance(data__group, float) and data__group.is_integer()) or isinstance(data__group, bool):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".group must be integer", value=data__group, name="" + (name_prefix or "data") + ".group", definition={'type': 'integer', 'minimum': 0, 'maximum': 4294967294}, rule='type')
            if isinstance(data__group, (int, float, Decimal)) and not isinstance(data__group, bool):
                if data__group < 0:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".group must be bigger than or equal to 0", value=data__group, name="" + (name_prefix or "data") + ".group", definition={'type': 'integer', 'minimum': 0, 'maximum': 4294967294}, rule='minimum')
                if data__group > 4294967294:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".group must be smaller than or equal to 4294967294", value=data__group, name="" + (name_prefix or "data") + ".group", definition={'type': 'integer', 'minimum': 0, 'maximum': 4294967294}, rule='maximum')
        if "pi" in data_keys:
            data_keys.remove("pi")
            data__pi = data["pi"]
            if not isinstance(data__pi, (bool)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".pi must be boolean", value=data__pi, name="" + (name_prefix or "data") + ".pi", definition={'type': 'boolean', 'default': False}, rule='type')
        if "vnet_hdr" in data_keys:
            data_keys.remove("vnet_hdr")
            data__vnethdr = data["vnet_hdr"]
            if not isinstance(data__vnethdr, (bool)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".vnet_hdr must be boolean", value=data__vnethdr, name="" + (name_prefix or "data") + ".vnet_hdr", definition={'type': 'boolean', 'description': "The virtio header, for the forwarder's offloads. Left out: false, but true on a device a tunnel names (docs/inventory.md)."}, rule='type')
        if "multi_queue" in data_keys:
            data_keys.remove("multi_queue")
            data__multiqueue = data["multi_queue"]
            if not isinstance(data__multiqueue, (bool)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".multi_queue must be boolean", value=data__multiqueue, name="" + (name_prefix or "data") + ".multi_queue", definition={'type': 'boolean', 'default': False}, rule='type')
        if "addresses" in data_keys:
            data_keys.remove("addresses")
            data__addresses = data["addresses"]
            if not isinstance(data__addresses, (list, tuple)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".addresses must be array", value=data__addresses, name="" + (name_prefix or "data") + ".addresses", definition={'type': 'array', 'items': {'type': 'string', 'description': 'ADDRESS/PREFIX, IPv4 or IPv6'}}, rule='type')
            data__addresses_is_list = isinstance(data__addresses, (list, tuple))
            if data__addresses_is_list:
                data__addresses_len = len(data__addresses)
                for data__addresses_x, data__addresses_item in enumerate(data__addresses):
                    if not isinstance(data__addresses_item, (str)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".addresses[{data__addresses_x}]".format(**locals()) + " must be string", value=data__addresses_item, name="" + (name_prefix or "data") + ".addresses[{data__addresses_x}]".format(**locals()) + "", definition={'type': 'string', 'description': 'ADDRESS/PREFIX, IPv4 or IPv6'}, rule='type')
        if data_keys:
            raise JsonSchemaValueException("" + (name_prefix or "data") + " must not contain "+str(data_keys)+" properties", value=data, name="" + (name_prefix or "data") + "", definition={'description': 'A tun/tap device, keyed by name. Layers merge by name; a later entry replaces an earlier one whole.', 'type': 'object', 'additionalProperties': False, 'required': ['name'], 'properties': {'name': {'type': 'string', 'minLength': 1, 'description': "Interface name: at most 15 bytes, no white space, '/', ':' or '%'."}, 'type': {'enum': ['tun', 'tap']}, 'state': {'enum': ['up', 'down', 'absent'], 'default': 'up'}, 'mtu': {'type': 'integer', 'minimum': 68, 'maximum': 65535, 'description': 'Left out: not managed; on a device a tunnel names, 1420 over UDP (1395 for a tap) and 1500 over TCP, so the carrier is never fragmented (docs/inventory.md).'}, 'mac': {'type': 'string', 'pattern': '^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$', 'description': 'tap only'}, 'owner': {'type': 'integer', 'minimum': 0, 'maximum': 4294967294}, 'group': {'type': 'integer', 'minimum': 0, 'maximum': 4294967294}, 'pi': {'type': 'boolean', 'default': False}, 'vnet_hdr': {'type': 'boolean', 'description': "The virtio header, for the forwarder's offloads. Left out: false, but true on a device a tunnel names (docs/inventory.md)."}, 'multi_queue': {'type': 'boolean', 'default': False}, 'addresses': {'type': 'array', 'items': {'type': 'string', 'description': 'ADDRESS/PREFIX, IPv4 or IPv6'}}}, 'anyOf': [{'required': ['type']}, {'properties': {'state': {'const': 'absent'}}, 'required': ['state']}]}, rule='additionalProperties')
    return data

validate = validate_https___provision_invalid_schemas_inventory_schema_json
