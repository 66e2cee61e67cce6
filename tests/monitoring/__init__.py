"""Tests of the monitoring as code: alert rules, promtool tests, dashboards, runbooks."""
