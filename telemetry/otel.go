package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/detectors/gcp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

// Exporter modes of Setup.
const (
	ExporterAuto   = "auto"   // gcp on Cloud Run, otlp when OTEL_EXPORTER_OTLP_ENDPOINT is set, else none
	ExporterGCP    = "gcp"    // OTLP to telemetry.googleapis.com with ADC and the GCP resource detector
	ExporterOTLP   = "otlp"   // OTLP/gRPC configured by the standard OTEL_EXPORTER_OTLP_* variables
	ExporterStdout = "stdout" // pretty JSON on stderr, for local debugging
	ExporterNone   = "none"   // no export (tests)
)

// Config chooses the exporters.
type Config struct {
	// Exporter is one of the Exporter* modes (SNAPSWEEP_TELEMETRY).
	Exporter    string
	ServiceName string
	Version     string
	// Lookup reads the environment (default os.LookupEnv).
	Lookup func(string) (string, bool)
	// Stderr receives the stdout exporters' output (default os.Stderr).
	Stderr io.Writer
}

// Mode resolves ExporterAuto to a concrete mode from the environment,
// following OpenTelemetry's standard variables where they exist.
func (c Config) Mode() string {
	lookup := c.Lookup
	if lookup == nil {
		lookup = os.LookupEnv
	}
	if v, _ := lookup("OTEL_SDK_DISABLED"); strings.EqualFold(v, "true") {
		return ExporterNone
	}
	mode := strings.ToLower(c.Exporter)
	if mode != "" && mode != ExporterAuto {
		return mode
	}
	if v, ok := lookup("OTEL_EXPORTER_OTLP_ENDPOINT"); ok && v != "" {
		return ExporterOTLP
	}
	if v, ok := lookup("K_SERVICE"); ok && v != "" {
		return ExporterGCP
	}
	return ExporterNone
}

// Setup installs the global tracer and meter providers and the W3C trace
// context propagator, and returns a function that flushes and stops them.
func Setup(ctx context.Context, cfg Config) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	mode := cfg.Mode()
	if mode == ExporterNone {
		return func(context.Context) error { return nil }, nil
	}
	if cfg.ServiceName == "" {
		cfg.ServiceName = "snapsweep"
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	attrs := resource.WithAttributes(semconv.ServiceName(cfg.ServiceName), semconv.ServiceVersion(cfg.Version))
	var res *resource.Resource
	var spanExp sdktrace.SpanExporter
	var metricExp sdkmetric.Exporter
	switch mode {
	case ExporterGCP:
		res, err = resource.New(ctx, resource.WithDetectors(gcp.NewDetector()), attrs, resource.WithTelemetrySDK())
		if err != nil {
			return nil, fmt.Errorf("detect GCP resource: %w", err)
		}
		creds, err := googleCredentials(ctx)
		if err != nil {
			return nil, err
		}
		spanExp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint("telemetry.googleapis.com:443"), otlptracegrpc.WithDialOption(creds))
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		metricExp, err = otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint("telemetry.googleapis.com:443"), otlpmetricgrpc.WithDialOption(creds))
		if err != nil {
			return nil, fmt.Errorf("otlp metric exporter: %w", err)
		}
	case ExporterOTLP:
		res, err = resource.New(ctx, resource.WithFromEnv(), attrs, resource.WithTelemetrySDK())
		if err != nil {
			return nil, err
		}
		if spanExp, err = otlptracegrpc.New(ctx); err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		if metricExp, err = otlpmetricgrpc.New(ctx); err != nil {
			return nil, fmt.Errorf("otlp metric exporter: %w", err)
		}
	case ExporterStdout:
		res, _ = resource.New(ctx, attrs)
		if spanExp, err = stdouttrace.New(stdouttrace.WithWriter(cfg.Stderr)); err != nil {
			return nil, err
		}
		if metricExp, err = stdoutmetric.New(stdoutmetric.WithWriter(cfg.Stderr)); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown telemetry exporter %q (want auto, gcp, otlp, stdout or none)", mode)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(spanExp), sdktrace.WithResource(res))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(metricExp)), sdkmetric.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	return func(ctx context.Context) error {
		return errors.Join(tp.Shutdown(ctx), mp.Shutdown(ctx))
	}, nil
}
