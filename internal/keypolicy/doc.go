// Package keypolicy decides which keys may call which API, from the
// KeyPolicies of the cluster. It is pure: no Kubernetes client, no clock.
//
//   - Compile turns a KeyPolicy into an immutable *Policy (an invalid one is
//     kept, and refuses every request of its hosts, so that editing a policy
//     into an invalid state never hands its hosts to someone else).
//   - Resolve settles conflicts between policies (the older keeps a host);
//     the status controller reports its answer, and NewTable applies the
//     same answer, so what users read is what the key server does.
//   - Table.Select chooses the policy of a request by host (exact before
//     wildcard, O(1) in the number of policies) and longest path prefix.
//   - Decide is the one decision every front end shares: forward-auth,
//     verify and gRPC ext_authz.
package keypolicy
