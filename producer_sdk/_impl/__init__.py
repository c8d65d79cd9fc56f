"""The SDK's internals: no stable API; the public modules one level up are built on them.

=============  ================================================================================
arguments      checks of the Router's arguments: identifiers, paths, subsets of paths
encode         DecisionEvent and OutcomeEvent as JSON bytes, fast (the hot path)
ledger         one router's record of reports: the Reporter behind each of its Decisions
calls          what run() and completion() use of their router (CallHost), the judge of results
callables      run() and arun(): the chosen callable path, retried on the paths not tried yet
model_call     one model call as a turn of a decision, plain or streamed (no I/O)
completions    completion() and acompletion(): the HTTP clients and the two drivers
=============  ================================================================================
"""
