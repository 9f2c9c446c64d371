"""False-alarm benchmark of the low-precision budget (issue 9, deliverable 2).

``candidates.py`` holds independent implementations of every form with a low-precision budget,
correct ones (they must pass: a failure is a false alarm) and deliberately less accurate ones
(they should fail: the detection rate), and the registry ``ENTRIES`` that pairs each with a form,
a dtype, a backend and the narrowing of the form's inputs. ``run.py`` runs the registry over many
seeds and writes the false alarms, detection rates and ratio distributions as JSON.

A benchmark, not a test: nothing here is collected by pytest.
"""
