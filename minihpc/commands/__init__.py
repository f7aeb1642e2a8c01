"""One module per verb (or per family of verbs that share a noun: `nfs`,
`modules`, `fault`, `site`, `busy`, `scratch`, `env`, `bench`, `class`, and the course's); each
exposes `add(subparsers)`, which registers its verbs with a `run(args) -> int`
handler. The logic lives outside them, in minihpc's modules."""

from minihpc.commands import (
    bench,
    build,
    busy,
    classroom,
    course,
    destroy,
    down,
    env,
    fault,
    logs,
    modules,
    nfs,
    prove,
    run,
    scratch,
    shell,
    site,
    status,
    timeline,
    up,
)

# In the order `minihpc --help` lists them: the cluster's life first.
VERBS = (up, build, down, destroy, status, shell, logs, run, prove, env, modules, site, timeline, nfs, scratch, fault,
         busy, classroom, course, bench)
