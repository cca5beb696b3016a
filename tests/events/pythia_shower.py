"""Shower and hadronise an LHE file with Pythia 8 (`pythia8mc`), in its own process; print a JSON summary.

python pythia_shower.py FILE.lhe N   ->  {"events": ..., "failed": ..., "hadrons_per_event": ..., "sigma_pb": ...}
Pythia's own messages (errors, warnings, its statistics) go to stdout above the JSON line.
"""

import json
import sys

import pythia8mc

path, n_events = sys.argv[1], int(sys.argv[2])
pythia = pythia8mc.Pythia("", False)
for setting in (
    "Beams:frameType = 4",  # beams and events from the Les Houches file
    f"Beams:LHEF = {path}",
    "Next:numberCount = 0",
    "Check:event = on",  # momentum, charge and colour checks of every event (on by default; said here)
):
    assert pythia.readString(setting), setting
assert pythia.init(), "Pythia init failed"
done = failed = hadrons = 0
while done + failed < n_events:
    if not pythia.next():
        if pythia.infoPython().atEndOfFile():
            break
        failed += 1
        continue
    done += 1
    hadrons += sum(1 for i in range(pythia.event.size()) if pythia.event[i].isFinal() and pythia.event[i].isHadron())
pythia.stat()
summary = {
    "events": done,
    "failed": failed,
    "hadrons_per_event": hadrons / max(done, 1),
    "sigma_pb": pythia.infoPython().sigmaGen() * 1e9,  # Pythia reports mb
}
print("PYTHIA-SUMMARY " + json.dumps(summary))
