"""The shared model vocabulary of the three algorithms: `features` (one encoder for every stage),
`models` (the one model spec that discovery, generation, selection and evaluation fit) and `trees`
(decision trees read back as exact rule predicates)."""
