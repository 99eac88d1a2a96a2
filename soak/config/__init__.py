"""The one schema: a TOML profile (and soak proxy's options) loaded into
frozen dataclasses, validated in one place. Every error names the file, the
field, what was expected and what was found:

    profiles/x.toml: heartbeat.interval: expected a duration like "30s", got -1

CLI options only override fields of an already valid profile
(soak.config.overrides), and are validated by the same parsers.

Modules (import from them directly; this package re-exports nothing):

- units: durations, rates and percentages, parsed and shown.
- validation: Loader and Section (read a table, fail with one line) and the one "did you mean".
- target: [target] (TargetConfig, Secret, StatsConfig) and the protocol names.
- openclaw: OpenClaw's [target.openclaw] table (model and parser) and its defaults.
- heartbeat: [heartbeat], [target.server_heartbeat], [reconnect], [storms].
- stages: typed stages (Ramp | Hold | Spike | Churn | Storm = Stage), [clients].
- impairment: [impairment] as written, one type per impairment table, and its proxy config.
- thresholds: Threshold, the threshold names and percentiles.
- profile: [run] and Profile (with run.json's redacted form).
- tables.run, tables.target, tables.clients, tables.thresholds, tables.impairment:
  one parser per table (tables.impairment also reads soak proxy's options).
- load: load_profile / parse_profile: the file through every table's parser.
- overrides: override(): command-line options applied to a loaded profile.

A protocol with a table of its own under [target] is a local change: a
module like openclaw.py (its dataclass and parser), one entry in
tables.target.PROTOCOL_TABLES, and its field on TargetConfig. A new stage
kind: its dataclass in stages.py (and in the Stage union) and its parser in
tables.clients.STAGE_PARSERS.
"""
