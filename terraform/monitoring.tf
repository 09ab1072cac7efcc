# Alert policies and a dashboard for snapsweep. The service exports its
# metrics over OTLP to telemetry.googleapis.com; Cloud Monitoring stores them
# with the Prometheus mapping (Managed Service for Prometheus, dots become
# underscores, counters get _total), so conditions are written in PromQL.
# Every policy's documentation links to its runbook section in
# docs/operations.md.

locals {
  runbook = "${var.runbook_base_url}/docs/operations.md"

  alerts = {
    deletion-failures = {
      display = "snapsweep: snapshot deletions failing"
      query   = "sum(increase(snapsweep_cleanup_results_total{result=\"failed\"}[10m])) > 0"
      text    = "Compute refused to delete snapshots with a permanent error; they are kept in state failed."
    }
    refusals = {
      display = "snapsweep: snapshots refused (ownership label mismatch)"
      query   = "sum(increase(snapsweep_cleanup_results_total{result=\"refused\"}[10m])) > 0"
      text    = "A snapshot about to be deleted did not carry the session label of its registration. Nothing was deleted."
    }
    dead-letters = {
      display = "snapsweep: messages dead-lettered"
      query   = "sum(pubsub_googleapis_com:subscription_num_undelivered_messages{monitored_resource=\"pubsub_subscription\",subscription_id=~\"${var.events_topic_name}-dead-letter.*|${var.cleanup_topic_name}-dead-letter.*\"}) > 0"
      text    = "Messages reached a dead-letter subscription after the maximum delivery attempts."
    }
    health-failing = {
      display = "snapsweep: sweep health check failing"
      query   = "max(snapsweep_health_status) >= 2"
      text    = "The last scheduled sweep reported a failing health check; its ERROR log line names it."
    }
    live-snapshots-growth = {
      display = "snapsweep: live snapshots near the threshold"
      query   = "max(snapsweep_snapshots_live) > ${floor(var.max_live_snapshots * 0.8)}"
      text    = "Live snapshots are above 80% of SNAPSWEEP_MAX_LIVE_SNAPSHOTS."
    }
    breaker-open = {
      display = "snapsweep: Compute circuit breaker open"
      query   = "max(snapsweep_compute_breaker_state) >= 2"
      text    = "Consecutive transient Compute errors opened the breaker; cleanups are answered 503 and retried."
    }
    vanished-snapshots = {
      display = "snapsweep: registered snapshots vanished from Compute"
      query   = "max(snapsweep_health_status{check=\"vanished-snapshots\"}) >= 1"
      text    = "Snapshots snapsweep was keeping (held, retained, active) are gone from Compute, or their names now hold other snapshots. snapsweep did not delete them."
    }
    stuck-failed = {
      display = "snapsweep: cleanups failed after re-drives without progress"
      query   = "sum(increase(snapsweep_sweep_actions_total{action=\"stuck_failed\"}[1h])) > 0"
      text    = "The sweep re-drove cleanups SNAPSWEEP_MAX_REDRIVES times without progress (or their project left the allowlist) and failed them for an operator."
    }
    unknown-session-orphans = {
      display = "snapsweep: labelled snapshots of unknown sessions"
      query   = "max(snapsweep_health_status{check=\"orphans-unknown-session\"}) >= 1"
      text    = "Snapshots carry the session label but name sessions this registry never knew. snapsweep never adopts or deletes them."
    }
    quota = {
      display = "snapsweep: Compute quota exhausted"
      query   = "sum(rate(snapsweep_compute_errors_total{class=\"rate_limited\"}[10m])) > 0.1"
      text    = "Compute keeps answering rate-limit errors; deletion slows down."
    }
  }
}

resource "google_monitoring_alert_policy" "alerts" {
  for_each = local.alerts

  project      = var.project_id
  display_name = each.value.display
  combiner     = "OR"
  severity     = contains(["refusals", "health-failing", "dead-letters"], each.key) ? "ERROR" : "WARNING"

  conditions {
    display_name = each.value.display
    condition_prometheus_query_language {
      query               = each.value.query
      duration            = "60s"
      evaluation_interval = "60s"
    }
  }

  documentation {
    content   = "${each.value.text}\n\nRunbook: ${local.runbook}#${each.key}"
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "1800s"
  }

  notification_channels = var.notification_channels
  user_labels           = local.labels

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_dashboard" "snapsweep" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName = "snapsweep"
    mosaicLayout = {
      columns = 12
      tiles = [for i, t in [
        { title = "Live snapshots", query = "max(snapsweep_snapshots_live)" },
        { title = "Cleanup results by result (per 5m)", query = "sum by (result) (increase(snapsweep_cleanup_results_total[5m]))" },
        { title = "Deletion latency p50/p99 from request (s)", query = "histogram_quantile(0.99, sum by (le) (rate(snapsweep_deletion_latency_seconds_bucket{from=\"request\"}[10m])))" },
        { title = "Messages handled by endpoint and outcome", query = "sum by (endpoint, outcome) (rate(snapsweep_messages_handled_total[5m]))" },
        { title = "Rejected messages by reason", query = "sum by (reason) (increase(snapsweep_messages_rejected_total[1h]))" },
        { title = "Compute errors by class", query = "sum by (class) (rate(snapsweep_compute_errors_total[5m]))" },
        { title = "Compute breaker (0 closed, 2 open)", query = "max(snapsweep_compute_breaker_state)" },
        { title = "Health checks (0 ok, 1 degraded, 2 failing)", query = "max by (check) (snapsweep_health_status)" },
        { title = "Sweep actions", query = "sum by (action) (increase(snapsweep_sweep_actions_total[1h]))" },
        { title = "Storage kept by reason (bytes; labelled snapshots the sweep listed)", query = "max by (reason) (snapsweep_storage_kept_bytes)" },
        { title = "Storage of deleted snapshots, up to (bytes per day)", query = "sum(increase(snapsweep_storage_freed_bytes_total[1d]))" },
        ] : {
        xPos   = (i % 2) * 6
        yPos   = floor(i / 2) * 4
        width  = 6
        height = 4
        widget = {
          title = t.title
          xyChart = {
            dataSets = [{
              plotType        = "LINE"
              timeSeriesQuery = { prometheusQuery = t.query }
            }]
          }
        }
      }]
    }
  })

  depends_on = [google_project_service.apis]
}
