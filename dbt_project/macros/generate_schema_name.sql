{#-
  Models land in their layer's namespace exactly (`staging`, `marts`, ...), in every target.
  dbt's default would prefix the target schema (`marts_staging`), a namespace without its own
  S3 prefix, which Trino's S3 user may not write. Targets differ by the stack the env file
  points at, not by schema names.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}
