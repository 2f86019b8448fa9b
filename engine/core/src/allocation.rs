//! Student-proposing deferred acceptance (Gale–Shapley) with capacities.
