// Package presence owns who is in the system: every node's lease in the nodes KV bucket (its
// name, zone, role, addresses and load, renewed every few seconds), and the reaper that keeps
// the log honest when a node stops without saying so. When a node's lease expires, a surviving
// node ends that node's sessions in the event log (tracks unpublished, subscriptions ended,
// peer.left with reason node_lost), with event ids derived from node, peer and join time, so
// racing survivors, and the node itself restarting on its data, write each ending once. A node
// taken for lost while it was alive ends, itself, the sessions the log ended (SelfEnd), and
// records nothing more.
//
// It reads room state from the rooms projection and writes through the event log's appender;
// it must not import ingress, egress or cmd.
//
// Imports: events, pipeline/eventlog, projections
package presence
