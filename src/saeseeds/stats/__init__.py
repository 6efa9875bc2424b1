"""Stage 4, statistics: shared fractions, orphans, power laws, chance levels, PW-MCC, intervals, the summary."""
