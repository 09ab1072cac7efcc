// Package servicetest builds a snapsweep service for tests without any
// emulator: service.NewComponents on store.Memory, an in-process Pub/Sub
// (pstest, through the real client) and the Compute fake (gcefake, through
// the real Compute client). The tests of handlers, service and status use
// it.
//
// It is test support only: nothing outside _test files imports it, and it
// decides nothing; the service under test does.
package servicetest

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/sethvargo/go-envconfig"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/snapsweep/snapsweep/config"
	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/service"
	"github.com/snapsweep/snapsweep/store"
)

// Project is the project the service runs in and allows.
const Project = "proj-a"

// Env is what a service under test runs on.
type Env struct {
	Config  *config.Config
	Options service.Options
	Reg     *store.Memory
	Fake    *gcefake.Fake
	// PubSub is the in-process Pub/Sub server; its Messages are what the
	// service published.
	PubSub *pstest.Server
}

// New prepares the configuration (settings added to the project and the
// fake's endpoint) and the injected clients, with both topics created.
// The caller may change Options before building.
func New(t testing.TB, settings map[string]string) *Env {
	t.Helper()
	ctx := context.Background()
	e := &Env{Reg: store.NewMemory(), Fake: gcefake.New(gcefake.Options{})}
	fakeSrv := httptest.NewServer(e.Fake)
	t.Cleanup(fakeSrv.Close)
	vars := map[string]string{"GOOGLE_CLOUD_PROJECT": Project, "SNAPSWEEP_COMPUTE_ENDPOINT": fakeSrv.URL}
	for k, v := range settings {
		vars[k] = v
	}
	cfg, err := config.Load(ctx, envconfig.MapLookuper(vars))
	if err != nil {
		t.Fatal(err)
	}
	e.Config = cfg
	var client *pubsub.Client
	e.PubSub, client = PubSub(t, Project, cfg.EventsTopic, cfg.CleanupTopic)
	e.Options = service.Options{
		Registry: e.Reg, PubSub: client, Logger: slog.New(slog.DiscardHandler), Version: "v-test",
		// The OIDC verifier never fetches keys: no test request carries a
		// token it would have to check.
		AuthOptions: []option.ClientOption{option.WithHTTPClient(&http.Client{Transport: noNetwork{}})},
	}
	return e
}

// PubSub is an in-process Pub/Sub server (pstest) and the real client of
// project on it, with the topics (ids) created; both close when the test
// ends.
func PubSub(t testing.TB, project string, topics ...string) (*pstest.Server, *pubsub.Client) {
	t.Helper()
	ctx := context.Background()
	srv := pstest.NewServer()
	t.Cleanup(func() { srv.Close() })
	conn, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	client, err := pubsub.NewClient(ctx, project, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	for _, topic := range topics {
		if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/" + project + "/topics/" + topic}); err != nil {
			t.Fatal(err)
		}
	}
	return srv, client
}

// Components builds the service's parts (closed when the test ends).
func (e *Env) Components(t testing.TB) *service.Components {
	t.Helper()
	c, err := service.NewComponents(context.Background(), e.Config, e.Options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// noNetwork answers every request 404 without leaving the process.
type noNetwork struct{}

func (noNetwork) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	http.NotFound(rec, r)
	return rec.Result(), nil
}
