"""Growth: templates rendered once at submit, experiments you can trust, growth events and
the viral coefficient by cohort; written rules and standard statistics, each decision
explainable."""
