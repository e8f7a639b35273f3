"""Optional integrations of oddjob with other libraries, each behind an extra:
``oddjob.contrib.opentelemetry`` (``oddjob[opentelemetry]``) and
``oddjob.contrib.prometheus`` (``oddjob[prometheus]``)."""
