"""Which rules `minihpc run` expects Snakemake to run itself (on the login
node): read from Snakemake's own compilation of the Snakefile (this text is
Snakemake 9's, for tests/workflows/prove)."""

from __future__ import annotations

from minihpc.runner import declared_local, on_login

COMPILED = """workflow.localrules(
\t\t\t\t'total' ,
\t\t\t\t'stamp' ,



)
@workflow.rule(name='all', lineno=20, snakefile='/tmp/pw/Snakefile')

@workflow.input(
\t\t\t\t"results/sum.txt" ,
)
@workflow.norun()
@workflow.run
def __rule_all(input, output):
\tpass
@workflow.rule(name='part', lineno=34, snakefile='/tmp/pw/Snakefile')
@workflow.shellcmd (
\t\t\t\t"seq 1 3 > {output}"
)
@workflow.run
def __rule_part(input, output):
\tshell("seq 1 3 > {output}")
@workflow.rule(name='late', lineno=40, snakefile='/tmp/pw/Snakefile')
@workflow.localrule(True)
@workflow.run
def __rule_late(input, output):
\tpass
"""


def test_declared_local_rules_and_rules_without_an_action_are_snakemakes_own() -> None:
    assert declared_local(COMPILED) == {"total", "stamp", "all", "late"}
    assert declared_local(None) is None


def test_only_other_rules_run_by_snakemake_itself_mean_the_profile_was_not_applied() -> None:
    out = "localrule all:\n    input: x\nlocalrule total:\nrule part:\nlocalrule part:\n"
    assert on_login(out, declared_local(COMPILED)) == ["part"]
