"""Generated from schemas/inventory.schema.json by `make validators` (provisioner/schema.py): do not edit."""
# ruff: noqa
SCHEMA_DIGEST = '59ce0da1583be36e3013737fef19fcf5506b19013656ef557e7e01675771f1fe'
VERSION = "2.22.3"
class Decimal:  # never in the data
    pass
class JsonSchemaValueException(ValueError):
    def __init__(self, message, value=None, name=None, definition=None, rule=None):
        super().__init__(message)
        self.message, self.value, self.name, self.definition, self.rule = message, value, name, definition, rule


JsonSchemaValuesException = JsonSchemaValueException


NoneType = type(None)

def validate_https___provision_invalid_schemas_inventory_schema_json(data, custom_formats={}, name_prefix=None):
    validate_https___provision_invalid_schemas_inventory_schema_json___defs_network_properties_routes_items(data, custom_formats, (name_prefix or "data") + "")
    return data

def validate_https___provision_invalid_schemas_inventory_schema_json___defs_network_properties_routes_items(data, custom_formats={}, name_prefix=None):
    if not isinstance(data, (dict)):
        raise JsonSchemaValueException("" + (name_prefix or "data") + " must be object", value=data, name="" + (name_prefix or "data") + "", definition={'description': 'A route, keyed by (table, to, metric). Without metric the kernel default applies (0 for IPv4, 1024 for IPv6); an absent route without metric matches every metric.', 'type': 'object', 'additionalProperties': False, 'required': ['to'], 'properties': {'to': {'type': 'string', 'description': "Destination network in CIDR form, or 'default'."}, 'via': {'type': 'string', 'description': 'Gateway address.'}, 'dev': {'type': 'string', 'description': 'Output device: declared in the inventory or present on the host.'}, 'metric': {'type': 'integer', 'minimum': 0, 'maximum': 4294967295}, 'table': {'type': 'integer', 'minimum': 1, 'maximum': 4294967295, 'default': 254}, 'state': {'enum': ['present', 'absent'], 'default': 'present'}}}, rule='type')
    data_is_dict = isinstance(data, dict)
    if data_is_dict:
        data__missing_keys = set(['to']) - data.keys()
        if data__missing_keys:
            raise JsonSchemaValueException("" + (name_prefix or "data") + " must contain " + (str(sorted(data__missing_keys)) + " properties"), value=data, name="" + (name_prefix or "data") + "", definition={'description': 'A route, keyed by (table, to, metric). Without metric the kernel default applies (0 for IPv4, 1024 for IPv6); an absent route without metric matches every metric.', 'type': 'object', 'additionalProperties': False, 'required': ['to'], 'properties': {'to': {'type': 'string', 'description': "Destination network in CIDR form, or 'default'."}, 'via': {'type': 'string', 'description': 'Gateway address.'}, 'dev': {'type': 'string', 'description': 'Output device: declared in the inventory or present on the host.'}, 'metric': {'type': 'integer', 'minimum': 0, 'maximum': 4294967295}, 'table': {'type': 'integer', 'minimum': 1, 'maximum': 4294967295, 'default': 254}, 'state': {'enum': ['present', 'absent'], 'default': 'present'}}}, rule='required')
        data_keys = set(data.keys())
        if "to" in data_keys:
            data_keys.remove("to")
            data__to = data["to"]
            if not isinstance(data__to, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".to must be string", value=data__to, name="" + (name_prefix or "data") + ".to", definition={'type': 'string', 'description': "Destination network in CIDR form, or 'default'."}, rule='type')
        if "via" in data_keys:
            data_keys.remove("via")
            data__via = data["via"]
            if not isinstance(data__via, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".via must be string", value=data__via, name="" + (name_prefix or "data") + ".via", definition={'type': 'string', 'description': 'Gateway address.'}, rule='type')
        if "dev" in data_keys:
            data_keys.remove("dev")
            data__dev = data["dev"]
            if not isinstance(data__dev, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".dev must be string", value=data__dev, name="" + (name_prefix or "data") + ".dev", definition={'type': 'string', 'description': 'Output device: declared in the inventory or present on the host.'}, rule='type')
        if "metric" in data_keys:
            data_keys.remove("metric")
            data__metric = data["metric"]
            if not isinstance(data__metric, (int)) and not (isinstance(data__metric, float) and data__metric.is_integer()) or isinstance(data__metric, bool):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".metric must be integer", value=data__metric, name="" + (name_prefix or "data") + ".metric", definition={'type': 'integer', 'minimum': 0, 'maximum': 4294967295}, rule='type')
            if isinstance(data__metric, (int, float, Decimal)) and not isinstance(data__metric, bool):
                if data__metric < 0:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".metric must be bigger than or equal to 0", value=data__metric, name="" + (name_prefix or "data") + ".metric", definition={'type': 'integer', 'minimum': 0, 'maximum': 4294967295}, rule='minimum')
                if data__metric > 4294967295:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".metric must be smaller than or equal to 4294967295", value=data__metric, name="" + (name_prefix or "data") + ".metric", definition={'type': 'integer', 'minimum': 0, 'maximum': 4294967295}, rule='maximum')
        if "table" in data_keys:
            data_keys.remove("table")
            data__table = data["table"]
            if not isinstance(data__table, (int)) and not (isinstance(data__table, float) and data__table.is_integer()) or isinstance(data__table, bool):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".table must be integer", value=data__table, name="" + (name_prefix or "data") + ".table", definition={'type': 'integer', 'minimum': 1, 'maximum': 4294967295, 'default': 254}, rule='type')
            if isinstance(data__table, (int, float, Decimal)) and not isinstance(data__table, bool):
                if data__table < 1:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".table must be bigger than or equal to 1", value=data__table, name="" + (name_prefix or "data") + ".table", definition={'type': 'integer', 'minimum': 1, 'maximum': 4294967295, 'default': 254}, rule='minimum')
                if data__table > 4294967295:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".table must be smaller than or equal to 4294967295", value=data__table, name="" + (name_prefix or "data") + ".table", definition={'type': 'integer', 'minimum': 1, 'maximum': 4294967295, 'default': 254}, rule='maximum')
        if "state" in data_keys:
            data_keys.remove("state")
            data__state = data["state"]
            if not (isinstance(data__state, str) and data__state == 'present' or isinstance(data__state, str) and data__state == 'absent'):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".state must be one of ['present', 'absent']", value=data__state, name="" + (name_prefix or "data") + ".state", definition={'enum': ['present', 'absent'], 'default': 'present'}, rule='enum')
        if data_keys:
            raise JsonSchemaValueException("" + (name_prefix or "data") + " must not contain "+str(data_keys)+" properties", value=data, name="" + (name_prefix or "data") + "", definition={'description': 'A route, keyed by (table, to, metric). Without metric the kernel default applies (0 for IPv4, 1024 for IPv6); an absent route without metric matches every metric.', 'type': 'object', 'additionalProperties': False, 'required': ['to'], 'properties': {'to': {'type': 'string', 'description': "Destination network in CIDR form, or 'default'."}, 'via': {'type': 'string', 'description': 'Gateway address.'}, 'dev': {'type': 'string', 'description': 'Output device: declared in the inventory or present on the host.'}, 'metric': {'type': 'integer', 'minimum': 0, 'maximum': 4294967295}, 'table': {'type': 'integer', 'minimum': 1, 'maximum': 4294967295, 'default': 254}, 'state': {'enum': ['present', 'absent'], 'default': 'present'}}}, rule='additionalProperties')
    return data

validate = validate_https___provision_invalid_schemas_inventory_schema_json
