output "service_url" {
  description = "URL of the Cloud Run service (its deterministic run.app URL), which the push subscriptions and the scheduler call."
  value       = local.service_url
}

output "service_uri" {
  description = "Main URI Cloud Run reports for the service."
  value       = google_cloud_run_v2_service.snapsweep.uri
}

output "auth_audience" {
  description = "Audience of the OIDC tokens the service accepts (SNAPSWEEP_AUTH_AUDIENCE)."
  value       = local.auth_audience
}

output "events_topic" {
  description = "Topic migration jobs publish events to."
  value       = google_pubsub_topic.stream["events"].name
}

output "cleanup_topic" {
  description = "Topic of the cleanup messages."
  value       = google_pubsub_topic.stream["cleanup"].name
}

output "dead_letter_topics" {
  description = "Dead-letter topic of each stream (events, cleanup)."
  value       = { for k, t in google_pubsub_topic.dead_letter : k => t.name }
}

output "dead_letter_subscriptions" {
  description = "Pull subscription that keeps each dead-letter topic's messages for operators."
  value       = { for k, s in google_pubsub_subscription.dead_letter : k => s.name }
}

output "service_account_email" {
  description = "Runtime identity of the service."
  value       = google_service_account.service.email
}

output "push_service_account_email" {
  description = "Identity of the Pub/Sub push requests."
  value       = google_service_account.push.email
}

output "scheduler_service_account_email" {
  description = "Identity of the scheduled sweep requests."
  value       = google_service_account.scheduler.email
}

output "builder_service_account_email" {
  description = "Cloud Build identity for building and deploying images (gcloud builds submit --service-account)."
  value       = google_service_account.builder.email
}

output "image_repository" {
  description = "Docker repository for the service's images: push IMAGE_REPOSITORY/snapsweep:TAG."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "build_source_bucket" {
  description = "Bucket for the source archives of gcloud builds submit (--gcs-source-staging-dir)."
  value       = google_storage_bucket.build_source.name
}

output "scheduler_job" {
  description = "Name of the Cloud Scheduler sweep job."
  value       = google_cloud_scheduler_job.sweep.name
}

output "push_subscriptions" {
  description = "Push subscription of each stream by key: events; cleanup-PROJECT for each managed project (filtered on the cleanup message's project attribute); cleanup-unrouted for cleanup messages without that attribute."
  value       = { for k, s in google_pubsub_subscription.push : k => s.name }
}
