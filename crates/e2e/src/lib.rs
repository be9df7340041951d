//! Test harness: starts a throwaway berthd (own data root, exec root, socket, pidfile, bridge
//! subnet) and always cleans up.
