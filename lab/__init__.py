"""The real-client lab: open-source LLM tools run through the gateway, recorded and labelled.

`python -m lab.setup` builds one virtualenv per tool, `python -m lab.run` runs every
(tool, setting) through a recording gateway and writes `lab/corpus/`, and `python -m
lab.report` scores that corpus offline into `lab/RESULTS.md` (see lab/README.md).
"""
