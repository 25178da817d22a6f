package logtools

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetmedia/jetmedia/projections/presence"
)

// ForgetOptions are `jetmedia cluster forget`'s.
type ForgetOptions struct {
	// Node is the edge's name, Domain its JetStream domain ("edge-<node>" when empty).
	Node, Domain string
	// By is who decides (recorded with the forget).
	By string
	// Yes skips the confirmation.
	Yes  bool
	JSON bool
	// URL and Token: do it through a node's HTTP API instead of NATS.
	URL, Token string
}

// ConfirmForget asks on stdin, unless o.Yes, and reports whether to go on.
func ConfirmForget(o ForgetOptions, stdin io.Reader, stdout io.Writer) bool {
	if o.Yes {
		return true
	}
	domain := o.Domain
	if domain == "" {
		domain = presence.DefaultEdgeDomain(o.Node)
	}
	fmt.Fprintf(stdout, "Forget edge %s (JetStream domain %s)? The region stops sourcing its log for good and ends its sessions\n"+
		"in the region's log (peer.left, reason node_lost). Only do this for an edge that is gone: the region cannot tell a\n"+
		"dead edge from one cut off. Type the edge's name to go on: ", o.Node, domain)
	line, _ := bufio.NewReader(stdin).ReadString('\n')
	return strings.TrimSpace(line) == o.Node
}

// Forget makes the region forget a dead edge through js (presence.Forget) and prints what it did.
func Forget(ctx context.Context, js jetstream.JetStream, o ForgetOptions, stdout io.Writer) error {
	res, err := presence.Forget(ctx, js, presence.ForgetRequest{Node: o.Node, Domain: o.Domain, By: o.By, Writer: "jetmedia-cli"})
	if err != nil {
		return err
	}
	return PrintForget(stdout, res, o.JSON)
}

// ForgetHTTP does it through a node's POST /v1/cluster/nodes/{name}/forget.
func ForgetHTTP(ctx context.Context, o ForgetOptions, stdout io.Writer) error {
	body, err := json.Marshal(map[string]string{"domain": o.Domain})
	if err != nil {
		return err
	}
	u := strings.TrimRight(o.URL, "/") + "/v1/cluster/nodes/" + url.PathEscape(o.Node) + "/forget"
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+o.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s: %s", req.URL.Path, resp.Status, strings.TrimSpace(string(b)))
	}
	var res presence.ForgetResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&res); err != nil {
		return fmt.Errorf("%s: %w", req.URL.Path, err)
	}
	return PrintForget(stdout, res, o.JSON)
}

// PrintForget prints a forget's result.
func PrintForget(stdout io.Writer, res presence.ForgetResult, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	if res.Noop() {
		_, err := fmt.Fprintf(stdout, "edge %s (domain %s) was forgotten already, by %s at %s: nothing to do\n",
			res.Node, res.Domain, res.By, res.At.Format(time.RFC3339))
		return err
	}
	fmt.Fprintf(stdout, "edge %s (domain %s) forgotten by %s at %s\n", res.Node, res.Domain, res.By, res.At.Format(time.RFC3339))
	fmt.Fprintf(stdout, "  its lease: %s\n", res.Lease)
	if res.SourceRemoved {
		fmt.Fprintln(stdout, "  the region's log no longer sources the edge's")
	}
	fmt.Fprintf(stdout, "  sessions ended in the region's log: %d in %d rooms\n", res.Ended, res.Rooms)
	if res.Remaining > 0 {
		fmt.Fprintf(stdout, "  the rooms bucket still shows %d of its sessions (the projection lags?): run forget again later\n", res.Remaining)
	}
	return nil
}

// Unforget deletes the record of a forgotten edge and says so.
func Unforget(ctx context.Context, js jetstream.JetStream, node, domain string, stdout io.Writer) error {
	if domain == "" {
		domain = presence.DefaultEdgeDomain(node)
	}
	ok, err := presence.Unforget(ctx, js, domain)
	if err != nil {
		return err
	}
	if !ok {
		_, err = fmt.Fprintf(stdout, "no forgotten edge of domain %s: nothing to do\n", domain)
		return err
	}
	_, err = fmt.Fprintf(stdout, "edge %s (domain %s) is no longer forgotten: it sources its log into the region's again at its next check "+
		"(within a minute). Its log's events after the forget follow the ends the region wrote: an edge that kept serving "+
		"meanwhile breaks its rooms' hash chains there.\n", node, domain)
	return err
}
