"""Working as a team: the pull-request report, the reproducibility check and the promotion
gate (GTO). Nothing here is imported by a pipeline stage: these read what the stages wrote
(and what git holds at a revision) and never write a stage's output."""
