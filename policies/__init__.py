"""Policy languages and their semantics (NetworkPolicy, admin tiers, Calico, Cilium, Istio)."""
