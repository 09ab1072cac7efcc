# The sweep: expired and over-threshold snapshots, stuck work, orphans.
# Scheduler fires at least once (now and then twice); the service tolerates
# overlapping sweeps.
locals {
  sweep_schedule = var.sweep_interval_minutes == 60 ? "0 * * * *" : "*/${var.sweep_interval_minutes} * * * *"
}

resource "google_cloud_scheduler_job" "sweep" {
  project          = var.project_id
  region           = local.scheduler_region
  name             = "${var.service_name}-sweep"
  description      = "Runs the ${var.service_name} sweep every ${var.sweep_interval_minutes} minutes."
  schedule         = local.sweep_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "${var.scheduler_attempt_deadline_seconds}s"

  retry_config {
    retry_count          = var.scheduler_retry_count
    min_backoff_duration = "30s"
    max_backoff_duration = "300s"
    max_doublings        = 3
  }

  http_target {
    http_method = "POST"
    uri         = "${local.service_url}/scheduler/sweep"
    body        = base64encode(jsonencode({ dryRun = false }))
    headers = {
      "Content-Type" = "application/json"
    }

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = local.auth_audience
    }
  }

  depends_on = [
    google_project_service.apis,
    google_cloud_run_v2_service_iam_member.scheduler_invoker,
  ]
}
