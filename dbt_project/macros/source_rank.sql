{#- Rank of a source in var('source_precedence'): 1 for the first listed. -#}
{% macro source_rank(column) -%}
    case {{ column }}
    {%- for source in var('source_precedence') %}
        when '{{ source }}' then {{ loop.index }}
    {%- endfor %}
        else {{ var('source_precedence') | length + 1 }}
    end
{%- endmacro %}
