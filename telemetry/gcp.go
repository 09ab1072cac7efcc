package telemetry

import (
	"context"
	"fmt"

	"golang.org/x/oauth2/google"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/oauth"
)

// googleCredentials authenticates the OTLP exporters to
// telemetry.googleapis.com with Application Default Credentials (on Cloud
// Run: the service account), the path that replaces the deprecated Cloud
// Trace and Cloud Monitoring exporters.
func googleCredentials(ctx context.Context) (grpc.DialOption, error) {
	ts, err := google.DefaultTokenSource(ctx, "https://www.googleapis.com/auth/cloud-platform")
	if err != nil {
		return nil, fmt.Errorf("application default credentials for telemetry: %w", err)
	}
	return grpc.WithPerRPCCredentials(oauth.TokenSource{TokenSource: ts}), nil
}
