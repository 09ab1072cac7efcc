# The smallest root configuration that deploys snapsweep: one host project,
# which is also the only project whose snapshots it manages unless
# managed_projects says otherwise. deploy/deploy.sh applies it.

terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.0"
    }
  }
}

variable "project_id" {
  type        = string
  description = "Host project of the service."
}

variable "region" {
  type        = string
  description = "Region of the service."
  default     = "us-central1"
}

variable "image" {
  type        = string
  description = "Image to run, e.g. REGION-docker.pkg.dev/PROJECT/snapsweep/snapsweep:TAG."
}

variable "managed_projects" {
  type        = list(string)
  description = "Projects whose snapshots snapsweep may delete; empty means project_id only."
  default     = []
}

variable "event_publishers" {
  type        = list(string)
  description = "IAM members of the migration jobs that publish events."
  default     = []
}

variable "dry_run" {
  type        = bool
  description = "Do everything but delete (a safe first deployment)."
  default     = false
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}

module "snapsweep" {
  source = "../.."

  project_id       = var.project_id
  region           = var.region
  image            = var.image
  managed_projects = var.managed_projects
  event_publishers = var.event_publishers
  dry_run          = var.dry_run
}

output "service_url" {
  description = "URL of the service."
  value       = module.snapsweep.service_url
}

output "events_topic" {
  description = "Topic migration jobs publish to."
  value       = module.snapsweep.events_topic
}

output "dead_letter_subscriptions" {
  description = "Where undeliverable messages wait for an operator."
  value       = module.snapsweep.dead_letter_subscriptions
}

output "image_repository" {
  description = "Where deploy/deploy.sh pushes images."
  value       = module.snapsweep.image_repository
}

output "builder_service_account_email" {
  description = "Cloud Build identity deploy/deploy.sh builds as."
  value       = module.snapsweep.builder_service_account_email
}

output "build_source_bucket" {
  description = "Bucket for gcloud builds submit sources."
  value       = module.snapsweep.build_source_bucket
}
