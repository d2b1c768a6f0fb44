//! Cluster-side effects (utilization attributes through crm_resource),
//! always through `exec`.
