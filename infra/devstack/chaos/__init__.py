"""`make chaos`: one mixed-fault run against a real local stack (issue 27).

- stack.py: the stack on free ports (moto's DynamoDB with its faults API, two gpusim
  replicas, the gateway, the usage aggregator and the write-back), stopped at the end;
- plan.py: the requests (keys with budgets, models, routes, client and upstream behaviours);
- client.py: the clients that send them at a fixed concurrency and keep what they saw;
- faults.py: two DynamoDB pauses and a replica paused with SIGSTOP, at points of progress;
- audit.py: the invariants, checked once the aggregator has drained;
- report.py: the summary table; __main__.py: the command.
"""
