"""Running a profile: one :class:`~soak.run.runner.Runner` composed of a load
source and a sink (soak.run.source).

- ``source``     the two interfaces: :class:`LoadSource` and :class:`Sink`
- ``runner``     the Runner: schedule, control loop, interval boundaries, finish
- ``finish``     run.json's manifest and summary.json, assembled (pure)
- ``stages``     a storm stage's command and restart request
- ``local``      the load source of clients in this process
- ``split``      how a run's load is split over worker processes (pure)
- ``spawn``      starting worker processes and telling them when the run starts
- ``processes``  the load source of worker processes (the parent's side)
- ``merge``      what the workers send, added up (intervals, storms, statuses)
- ``sinks``      the sink of a worker process: the pipe to its parent
"""
