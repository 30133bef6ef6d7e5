"""Twenty JSON schemas for structured output, each with an instance it accepts: nested
objects, arrays, enums, bounded numbers, optional fields, patterns. Strings and arrays
are bounded so that any output the grammar allows ends within a few hundred tokens."""

from __future__ import annotations

S = {'type': 'string', 'maxLength': 24}

SCHEMAS = [
    ('person', {'type': 'object', 'properties': {'name': S, 'age': {'type': 'integer', 'minimum': 0, 'maximum': 130}},
                'required': ['name', 'age'], 'additionalProperties': False},
     {'name': 'Ada', 'age': 36}),
    ('enum_color', {'type': 'object', 'properties': {'color': {'enum': ['red', 'green', 'blue']}},
                    'required': ['color'], 'additionalProperties': False},
     {'color': 'green'}),
    ('bounded_number', {'type': 'object', 'properties': {'t': {'type': 'number', 'minimum': -10, 'maximum': 45}},
                        'required': ['t'], 'additionalProperties': False},
     {'t': 21.5}),
    ('boolean_flags', {'type': 'object', 'properties': {'ok': {'type': 'boolean'}, 'done': {'type': 'boolean'}},
                       'required': ['ok', 'done'], 'additionalProperties': False},
     {'ok': True, 'done': False}),
    ('array_of_ints', {'type': 'object', 'properties': {'xs': {'type': 'array', 'items': {'type': 'integer', 'minimum': 0, 'maximum': 99},
                                                               'minItems': 1, 'maxItems': 5}},
                       'required': ['xs'], 'additionalProperties': False},
     {'xs': [1, 2, 3]}),
    ('array_of_strings', {'type': 'array', 'items': {'type': 'string', 'maxLength': 12}, 'minItems': 2, 'maxItems': 4},
     ['a', 'bc']),
    ('nested_address', {'type': 'object', 'properties': {
        'name': S, 'address': {'type': 'object', 'properties': {'city': S, 'zip': {'type': 'string', 'pattern': '^[0-9]{5}$'}},
                               'required': ['city', 'zip'], 'additionalProperties': False}},
        'required': ['name', 'address'], 'additionalProperties': False},
     {'name': 'Bo', 'address': {'city': 'Paris', 'zip': '75001'}}),
    ('optional_fields', {'type': 'object', 'properties': {'title': S, 'subtitle': S, 'pages': {'type': 'integer', 'minimum': 1, 'maximum': 2000}},
                         'required': ['title'], 'additionalProperties': False},
     {'title': 'Dune', 'pages': 412}),
    ('list_of_objects', {'type': 'object', 'properties': {'items': {'type': 'array', 'maxItems': 3, 'items': {
        'type': 'object', 'properties': {'sku': {'type': 'string', 'pattern': '^[A-Z]{3}-[0-9]{3}$'}, 'qty': {'type': 'integer', 'minimum': 1, 'maximum': 9}},
        'required': ['sku', 'qty'], 'additionalProperties': False}}}, 'required': ['items'], 'additionalProperties': False},
     {'items': [{'sku': 'ABC-123', 'qty': 2}]}),
    ('string_pattern_date', {'type': 'object', 'properties': {'date': {'type': 'string', 'pattern': '^20[0-9]{2}-[01][0-9]-[0-3][0-9]$'}},
                             'required': ['date'], 'additionalProperties': False},
     {'date': '2026-12-02'}),
    ('any_of', {'type': 'object', 'properties': {'id': {'anyOf': [{'type': 'integer', 'minimum': 0, 'maximum': 10 ** 6}, S]}},
                'required': ['id'], 'additionalProperties': False},
     {'id': 42}),
    ('nullable', {'type': 'object', 'properties': {'note': {'type': ['string', 'null'], 'maxLength': 16}},
                  'required': ['note'], 'additionalProperties': False},
     {'note': None}),
    ('const_and_enum', {'type': 'object', 'properties': {'version': {'const': 2}, 'level': {'enum': [1, 2, 3, 'max']}},
                        'required': ['version', 'level'], 'additionalProperties': False},
     {'version': 2, 'level': 'max'}),
    ('integer_exclusive', {'type': 'object', 'properties': {'n': {'type': 'integer', 'exclusiveMinimum': 0, 'exclusiveMaximum': 10}},
                           'required': ['n'], 'additionalProperties': False},
     {'n': 5}),
    ('deep_nesting', {'type': 'object', 'properties': {'a': {'type': 'object', 'properties': {'b': {'type': 'object', 'properties': {
        'c': {'type': 'array', 'maxItems': 2, 'items': {'type': 'boolean'}}}, 'required': ['c'], 'additionalProperties': False}},
        'required': ['b'], 'additionalProperties': False}}, 'required': ['a'], 'additionalProperties': False},
     {'a': {'b': {'c': [True]}}}),
    ('tuple_prefix_items', {'type': 'array', 'prefixItems': [{'type': 'integer', 'minimum': 0, 'maximum': 9}, S], 'items': False},
     [3, 'x']),
    ('defs_ref', {'$defs': {'pt': {'type': 'object', 'properties': {'x': {'type': 'integer', 'minimum': -99, 'maximum': 99},
                                                                    'y': {'type': 'integer', 'minimum': -99, 'maximum': 99}},
                                   'required': ['x', 'y'], 'additionalProperties': False}},
                  'type': 'object', 'properties': {'start': {'$ref': '#/$defs/pt'}, 'end': {'$ref': '#/$defs/pt'}},
                  'required': ['start', 'end'], 'additionalProperties': False},
     {'start': {'x': 0, 'y': 1}, 'end': {'x': 2, 'y': -3}}),
    ('one_of_shapes', {'oneOf': [
        {'type': 'object', 'properties': {'kind': {'const': 'circle'}, 'r': {'type': 'number', 'minimum': 0, 'maximum': 100}},
         'required': ['kind', 'r'], 'additionalProperties': False},
        {'type': 'object', 'properties': {'kind': {'const': 'square'}, 'side': {'type': 'number', 'minimum': 0, 'maximum': 100}},
         'required': ['kind', 'side'], 'additionalProperties': False}]},
     {'kind': 'square', 'side': 2}),
    ('string_lengths', {'type': 'object', 'properties': {'code': {'type': 'string', 'minLength': 2, 'maxLength': 4}},
                        'required': ['code'], 'additionalProperties': False},
     {'code': 'FR'}),
    ('review', {'type': 'object', 'properties': {
        'stars': {'type': 'integer', 'minimum': 1, 'maximum': 5}, 'summary': {'type': 'string', 'maxLength': 40},
        'tags': {'type': 'array', 'maxItems': 3, 'items': {'enum': ['food', 'service', 'price', 'view']}},
        'recommend': {'type': 'boolean'}},
        'required': ['stars', 'summary', 'recommend'], 'additionalProperties': False},
     {'stars': 4, 'summary': 'Good', 'tags': ['food'], 'recommend': True}),
]
# What llguidance cannot enforce (the error says so before any compute).
UNSUPPORTED = {'type': 'array', 'items': {'type': 'integer'}, 'uniqueItems': True}
