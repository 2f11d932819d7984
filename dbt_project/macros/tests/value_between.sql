{#-
  Generic test: every non-null value of `column_name` lies in [min_value, max_value].
  Fails with the offending rows, identified by `key_columns`, so the error names them
  (`lakehouse dbt` prints the stored failures).
-#}
{% test value_between(model, column_name, min_value, max_value, key_columns=[]) %}
{{ config(store_failures=true) }}
select
    {% for key in key_columns %}{{ key }}, {% endfor %}
    {{ column_name }} as offending_value,
    {{ min_value }} as min_allowed,
    {{ max_value }} as max_allowed
from {{ model }}
where {{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }}
{% endtest %}
