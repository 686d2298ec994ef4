"""CNI dataplanes (Calico, Cilium): compile the cluster into routes, chains and maps."""
