//! Finding the launcher's AWS calls in its source, and the IAM action each needs, so a
//! test can hold the operator policy to them.

use std::fs;
use std::path::{Path, PathBuf};

use super::rust_source::{code_only, is_ident};

// Every operation of the services the launcher talks to, as the SDK names its fluent
// methods. An unknown name is not an AWS call; a known one must be in the policy.
pub const ECS_OPERATIONS: &str = "
    associate_gateway_with_cluster continue_service_deployment create_capacity_provider
    create_cluster create_daemon create_express_gateway_service create_gateway
    create_service create_task_set delete_account_setting delete_attributes
    delete_capacity_provider delete_cluster delete_daemon delete_daemon_task_definition
    delete_express_gateway_service delete_gateway delete_service delete_task_definitions
    delete_task_set deregister_container_instance deregister_task_definition
    describe_capacity_providers describe_clusters describe_container_instances
    describe_daemon describe_daemon_deployments describe_daemon_revisions
    describe_daemon_task_definition describe_express_gateway_service describe_gateway
    describe_gateway_resources describe_gateway_route describe_service_deployments
    describe_service_revisions describe_services describe_task_definition
    describe_task_sets describe_tasks disassociate_gateway_from_cluster
    discover_poll_endpoint execute_command get_task_protection list_account_settings
    list_attributes list_clusters list_container_instances list_daemon_deployments
    list_daemon_task_definitions list_daemons list_gateway_cluster_associations
    list_gateway_routes list_gateways list_service_deployments list_services
    list_services_by_namespace list_tags_for_resource list_task_definition_families
    list_task_definitions list_tasks put_account_setting put_account_setting_default
    put_attributes put_cluster_capacity_providers register_container_instance
    register_daemon_task_definition register_task_definition run_task start_task
    stop_service_deployment stop_task submit_attachment_state_changes
    submit_container_state_change submit_task_state_change tag_resource untag_resource
    update_capacity_provider update_cluster update_cluster_settings
    update_container_agent update_container_instances_state update_daemon
    update_express_gateway_service update_gateway update_service
    update_service_primary_task_set update_task_protection update_task_set";

pub const LOGS_OPERATIONS: &str = "
    associate_kms_key associate_source_to_s3_table_integration cancel_export_task
    cancel_import_task create_delivery create_export_task create_import_task
    create_log_anomaly_detector create_log_group create_log_stream create_lookup_table
    create_scheduled_query delete_account_policy delete_data_protection_policy
    delete_delivery delete_delivery_destination delete_delivery_destination_policy
    delete_delivery_source delete_destination delete_index_policy delete_integration
    delete_log_anomaly_detector delete_log_group delete_log_stream delete_lookup_table
    delete_metric_filter delete_query_definition delete_resource_policy
    delete_retention_policy delete_scheduled_query delete_subscription_filter
    delete_syslog_configuration delete_transformer describe_account_policies
    describe_configuration_templates describe_deliveries describe_delivery_destinations
    describe_delivery_sources describe_destinations describe_export_tasks
    describe_field_indexes describe_import_task_batches describe_import_tasks
    describe_index_policies describe_log_groups describe_log_streams
    describe_lookup_tables describe_metric_filters describe_queries
    describe_query_definitions describe_resource_policies describe_subscription_filters
    disassociate_kms_key disassociate_source_from_s3_table_integration filter_log_events
    get_data_protection_policy get_delivery get_delivery_destination
    get_delivery_destination_policy get_delivery_source get_integration
    get_log_anomaly_detector get_log_events get_log_fields get_log_group_fields
    get_log_object get_log_record get_lookup_table get_query_results
    get_scheduled_query get_scheduled_query_history get_storage_tier_policy
    get_transformer list_aggregate_log_group_summaries list_anomalies list_integrations
    list_log_anomaly_detectors list_log_groups list_log_groups_for_query
    list_scheduled_queries list_sources_for_s3_table_integration
    list_syslog_configurations list_tags_for_resource list_tags_log_group
    put_account_policy put_bearer_token_authentication put_data_protection_policy
    put_delivery_destination put_delivery_destination_policy put_delivery_source
    put_destination put_destination_policy put_index_policy put_integration
    put_log_events put_log_group_deletion_protection put_metric_filter
    put_query_definition put_resource_policy put_retention_policy
    put_storage_tier_policy put_subscription_filter put_syslog_configuration
    put_transformer start_live_tail start_query stop_query tag_log_group tag_resource
    test_metric_filter test_transformer untag_log_group untag_resource update_anomaly
    update_delivery_configuration update_log_anomaly_detector update_lookup_table
    update_scheduled_query";

pub const SECRETS_MANAGER_OPERATIONS: &str = "
    batch_get_secret_value cancel_rotate_secret create_secret delete_resource_policy
    delete_secret describe_secret get_random_password get_resource_policy
    get_secret_value list_secret_version_ids list_secrets put_resource_policy
    put_secret_value remove_regions_from_replication replicate_secret_to_regions
    restore_secret rotate_secret stop_replication_to_replica tag_resource
    untag_resource update_secret update_secret_version_stage validate_resource_policy";

// The operation modules of aws-sdk-ec2 1.274 and aws-sdk-ecr 1.138.
pub const EC2_OPERATIONS: &str = "
    accept_address_transfer accept_capacity_reservation_billing_ownership
    accept_reserved_instances_exchange_quote
    accept_transit_gateway_client_vpn_attachment
    accept_transit_gateway_multicast_domain_associations
    accept_transit_gateway_peering_attachment accept_transit_gateway_vpc_attachment
    accept_vpc_endpoint_connections accept_vpc_peering_connection advertise_byoip_cidr
    allocate_address allocate_hosts allocate_ipam_pool_cidr
    apply_security_groups_to_client_vpn_target_network assign_ipv6_addresses
    assign_private_ip_addresses assign_private_nat_gateway_address associate_address
    associate_application_status_check associate_capacity_reservation_billing_owner
    associate_client_vpn_target_network associate_dhcp_options
    associate_enclave_certificate_iam_role associate_iam_instance_profile
    associate_instance_event_window associate_ipam_byoasn
    associate_ipam_resource_discovery associate_nat_gateway_address
    associate_route_server associate_route_table associate_security_group_vpc
    associate_subnet_cidr_block associate_transit_gateway_multicast_domain
    associate_transit_gateway_policy_table associate_transit_gateway_route_table
    associate_trunk_interface associate_vpc_cidr_block attach_classic_link_vpc
    attach_image_watermark attach_internet_gateway attach_network_interface
    attach_verified_access_trust_provider attach_volume attach_vpn_gateway
    authorize_client_vpn_ingress authorize_security_group_egress
    authorize_security_group_ingress batch_modify_ipam_routing_policy_registrations
    bundle_instance cancel_bundle_task cancel_capacity_reservation
    cancel_capacity_reservation_fleets cancel_conversion_task
    cancel_declarative_policies_report cancel_export_task
    cancel_image_launch_permission cancel_import_task
    cancel_reserved_instances_listing cancel_spot_fleet_requests
    cancel_spot_instance_requests confirm_product_instance copy_fpga_image copy_image
    copy_snapshot copy_volumes create_application_status_check
    create_capacity_manager_data_export create_capacity_reservation
    create_capacity_reservation_by_splitting
    create_capacity_reservation_cancellation_quote
    create_capacity_reservation_date_change_quote create_capacity_reservation_fleet
    create_carrier_gateway create_client_vpn_endpoint create_client_vpn_route
    create_coip_cidr create_coip_pool create_customer_gateway create_default_subnet
    create_default_vpc create_delegate_mac_volume_ownership_task create_dhcp_options
    create_egress_only_internet_gateway create_fleet create_flow_logs
    create_fpga_image create_image create_image_usage_report
    create_instance_connect_endpoint create_instance_event_window
    create_instance_export_task create_internet_gateway
    create_interruptible_capacity_reservation_allocation create_ipam
    create_ipam_external_resource_verification_token
    create_ipam_internet_registry_association create_ipam_policy create_ipam_pool
    create_ipam_prefix_list_resolver create_ipam_prefix_list_resolver_target
    create_ipam_resource_discovery create_ipam_routing_policy_registration
    create_ipam_scope create_key_pair create_launch_template
    create_launch_template_version create_local_gateway_route
    create_local_gateway_route_table
    create_local_gateway_route_table_virtual_interface_group_association
    create_local_gateway_route_table_vpc_association
    create_local_gateway_virtual_interface
    create_local_gateway_virtual_interface_group
    create_mac_system_integrity_protection_modification_task
    create_managed_prefix_list create_nat_gateway create_network_acl
    create_network_acl_entry create_network_insights_access_scope
    create_network_insights_path create_network_interface
    create_network_interface_permission create_placement_group create_public_ipv4_pool
    create_replace_root_volume_task create_reserved_instances_listing
    create_restore_image_task create_route create_route_server
    create_route_server_endpoint create_route_server_peer create_route_table
    create_secondary_network create_secondary_subnet create_security_group
    create_snapshot create_snapshots create_spot_datafeed_subscription
    create_store_image_task create_subnet create_subnet_cidr_reservation create_tags
    create_traffic_mirror_filter create_traffic_mirror_filter_rule
    create_traffic_mirror_session create_traffic_mirror_target create_transit_gateway
    create_transit_gateway_connect create_transit_gateway_connect_peer
    create_transit_gateway_metering_policy
    create_transit_gateway_metering_policy_entry
    create_transit_gateway_multicast_domain create_transit_gateway_peering_attachment
    create_transit_gateway_policy_table create_transit_gateway_policy_table_entry
    create_transit_gateway_prefix_list_reference create_transit_gateway_route
    create_transit_gateway_route_table create_transit_gateway_route_table_announcement
    create_transit_gateway_vpc_attachment create_verified_access_endpoint
    create_verified_access_group create_verified_access_instance
    create_verified_access_trust_provider create_volume create_vpc
    create_vpc_block_public_access_exclusion create_vpc_encryption_control
    create_vpc_endpoint create_vpc_endpoint_connection_notification
    create_vpc_endpoint_service_configuration create_vpc_peering_connection
    create_vpn_concentrator create_vpn_connection create_vpn_connection_route
    create_vpn_gateway delete_application_status_check
    delete_capacity_manager_data_export delete_carrier_gateway
    delete_client_vpn_endpoint delete_client_vpn_endpoint_authorization_policy
    delete_client_vpn_route delete_coip_cidr delete_coip_pool delete_customer_gateway
    delete_dhcp_options delete_egress_only_internet_gateway delete_fleets
    delete_flow_logs delete_fpga_image delete_image_usage_report
    delete_instance_connect_endpoint delete_instance_event_window
    delete_internet_gateway delete_ipam
    delete_ipam_external_resource_verification_token
    delete_ipam_internet_registry_association delete_ipam_policy delete_ipam_pool
    delete_ipam_prefix_list_resolver delete_ipam_prefix_list_resolver_target
    delete_ipam_resource_discovery delete_ipam_routing_policy_registration
    delete_ipam_scope delete_key_pair delete_launch_template
    delete_launch_template_versions delete_local_gateway_route
    delete_local_gateway_route_table
    delete_local_gateway_route_table_virtual_interface_group_association
    delete_local_gateway_route_table_vpc_association
    delete_local_gateway_virtual_interface
    delete_local_gateway_virtual_interface_group delete_managed_prefix_list
    delete_nat_gateway delete_network_acl delete_network_acl_entry
    delete_network_insights_access_scope delete_network_insights_access_scope_analysis
    delete_network_insights_analysis delete_network_insights_path
    delete_network_interface delete_network_interface_permission
    delete_placement_group delete_public_ipv4_pool delete_queued_reserved_instances
    delete_route delete_route_server delete_route_server_endpoint
    delete_route_server_peer delete_route_table delete_secondary_network
    delete_secondary_subnet delete_security_group delete_snapshot
    delete_spot_datafeed_subscription delete_subnet delete_subnet_cidr_reservation
    delete_tags delete_traffic_mirror_filter delete_traffic_mirror_filter_rule
    delete_traffic_mirror_session delete_traffic_mirror_target delete_transit_gateway
    delete_transit_gateway_client_vpn_attachment delete_transit_gateway_connect
    delete_transit_gateway_connect_peer delete_transit_gateway_metering_policy
    delete_transit_gateway_metering_policy_entry
    delete_transit_gateway_multicast_domain delete_transit_gateway_peering_attachment
    delete_transit_gateway_policy_table delete_transit_gateway_policy_table_entry
    delete_transit_gateway_prefix_list_reference delete_transit_gateway_route
    delete_transit_gateway_route_table delete_transit_gateway_route_table_announcement
    delete_transit_gateway_vpc_attachment delete_verified_access_endpoint
    delete_verified_access_group delete_verified_access_instance
    delete_verified_access_trust_provider delete_volume delete_vpc
    delete_vpc_block_public_access_exclusion delete_vpc_encryption_control
    delete_vpc_endpoint_connection_notifications
    delete_vpc_endpoint_service_configurations delete_vpc_endpoints
    delete_vpc_peering_connection delete_vpn_concentrator delete_vpn_connection
    delete_vpn_connection_route delete_vpn_gateway deprovision_byoip_cidr
    deprovision_ipam_byoasn deprovision_ipam_pool_cidr
    deprovision_public_ipv4_pool_cidr deregister_image
    deregister_instance_event_notification_attributes
    deregister_transit_gateway_multicast_group_members
    deregister_transit_gateway_multicast_group_sources describe_account_attributes
    describe_account_vpc_encryption_control describe_address_transfers
    describe_addresses describe_addresses_attribute describe_aggregate_id_format
    describe_application_status describe_application_status_check_associations
    describe_application_status_checks describe_availability_zones
    describe_aws_network_performance_metric_subscriptions describe_bundle_tasks
    describe_byoip_cidrs describe_capacity_block_extension_history
    describe_capacity_block_extension_offerings describe_capacity_block_offerings
    describe_capacity_block_status describe_capacity_blocks
    describe_capacity_manager_data_exports
    describe_capacity_reservation_billing_requests
    describe_capacity_reservation_cancellation_quotes
    describe_capacity_reservation_date_change_quotes
    describe_capacity_reservation_fleets describe_capacity_reservation_topology
    describe_capacity_reservations describe_carrier_gateways
    describe_classic_link_instances describe_client_vpn_authorization_rules
    describe_client_vpn_connections describe_client_vpn_endpoints
    describe_client_vpn_routes describe_client_vpn_target_networks describe_coip_pools
    describe_conversion_tasks describe_customer_gateways
    describe_declarative_policies_reports describe_dhcp_options
    describe_egress_only_internet_gateways describe_elastic_gpus
    describe_export_image_tasks describe_export_tasks describe_fast_launch_images
    describe_fast_snapshot_restores describe_fleet_history describe_fleet_instances
    describe_fleets describe_flow_logs describe_fpga_image_attribute
    describe_fpga_images describe_host_reservation_offerings
    describe_host_reservations describe_hosts
    describe_iam_instance_profile_associations describe_id_format
    describe_identity_id_format describe_image_attribute describe_image_references
    describe_image_usage_report_entries describe_image_usage_reports describe_images
    describe_import_image_tasks describe_import_snapshot_tasks
    describe_instance_attribute describe_instance_connect_endpoints
    describe_instance_credit_specifications
    describe_instance_event_notification_attributes describe_instance_event_windows
    describe_instance_image_metadata describe_instance_sql_ha_history_states
    describe_instance_sql_ha_states describe_instance_status
    describe_instance_topology describe_instance_type_offerings
    describe_instance_types describe_instances describe_internet_gateways
    describe_ipam_byoasn describe_ipam_external_resource_verification_tokens
    describe_ipam_internet_registry_associations describe_ipam_policies
    describe_ipam_pool_allocations describe_ipam_pools
    describe_ipam_prefix_list_resolver_targets describe_ipam_prefix_list_resolvers
    describe_ipam_resource_discoveries describe_ipam_resource_discovery_associations
    describe_ipam_scopes describe_ipams describe_ipv6_pools describe_key_pairs
    describe_launch_template_versions describe_launch_templates
    describe_local_gateway_route_table_virtual_interface_group_associations
    describe_local_gateway_route_table_vpc_associations
    describe_local_gateway_route_tables
    describe_local_gateway_virtual_interface_groups
    describe_local_gateway_virtual_interfaces describe_local_gateways
    describe_locked_snapshots describe_mac_hosts describe_mac_modification_tasks
    describe_managed_prefix_lists describe_moving_addresses describe_nat_gateways
    describe_network_acls describe_network_insights_access_scope_analyses
    describe_network_insights_access_scopes describe_network_insights_analyses
    describe_network_insights_paths describe_network_interface_attribute
    describe_network_interface_permissions describe_network_interfaces
    describe_outpost_lags describe_placement_groups describe_prefix_lists
    describe_principal_id_format describe_public_ipv4_pools describe_regions
    describe_replace_root_volume_tasks describe_reserved_instances
    describe_reserved_instances_listings describe_reserved_instances_modifications
    describe_reserved_instances_offerings describe_route_server_endpoints
    describe_route_server_peers describe_route_servers describe_route_tables
    describe_scheduled_instance_availability describe_scheduled_instances
    describe_secondary_interfaces describe_secondary_networks
    describe_secondary_subnets describe_security_group_references
    describe_security_group_rules describe_security_group_vpc_associations
    describe_security_groups describe_service_link_virtual_interfaces
    describe_snapshot_attribute describe_snapshot_tier_status describe_snapshots
    describe_spot_datafeed_subscription describe_spot_fleet_instances
    describe_spot_fleet_request_history describe_spot_fleet_requests
    describe_spot_instance_requests describe_spot_price_history
    describe_stale_security_groups describe_store_image_tasks describe_subnets
    describe_tags describe_traffic_mirror_filter_rules describe_traffic_mirror_filters
    describe_traffic_mirror_sessions describe_traffic_mirror_targets
    describe_transit_gateway_attachments describe_transit_gateway_connect_peers
    describe_transit_gateway_connects describe_transit_gateway_metering_policies
    describe_transit_gateway_multicast_domains
    describe_transit_gateway_peering_attachments
    describe_transit_gateway_policy_tables
    describe_transit_gateway_route_table_announcements
    describe_transit_gateway_route_tables describe_transit_gateway_vpc_attachments
    describe_transit_gateways describe_trunk_interface_associations
    describe_verified_access_endpoints describe_verified_access_groups
    describe_verified_access_instance_logging_configurations
    describe_verified_access_instances describe_verified_access_trust_providers
    describe_volume_attribute describe_volume_status describe_volumes
    describe_volumes_modifications describe_vpc_attribute
    describe_vpc_block_public_access_exclusions
    describe_vpc_block_public_access_options describe_vpc_classic_link
    describe_vpc_classic_link_dns_support describe_vpc_encryption_controls
    describe_vpc_endpoint_associations describe_vpc_endpoint_connection_notifications
    describe_vpc_endpoint_connections describe_vpc_endpoint_service_configurations
    describe_vpc_endpoint_service_permissions describe_vpc_endpoint_services
    describe_vpc_endpoints describe_vpc_peering_connections describe_vpcs
    describe_vpn_concentrators describe_vpn_connections describe_vpn_gateways
    detach_classic_link_vpc detach_image_watermark detach_internet_gateway
    detach_network_interface detach_verified_access_trust_provider detach_volume
    detach_vpn_gateway disable_address_transfer disable_allowed_images_settings
    disable_application_status_check_suppression
    disable_aws_network_performance_metric_subscription disable_capacity_manager
    disable_ebs_encryption_by_default disable_fast_launch
    disable_fast_snapshot_restores disable_image disable_image_block_public_access
    disable_image_deprecation disable_image_deregistration_protection
    disable_instance_sql_ha_standby_detections disable_ipam_organization_admin_account
    disable_ipam_policy disable_route_server_propagation disable_serial_console_access
    disable_snapshot_block_public_access
    disable_transit_gateway_route_table_propagation disable_vgw_route_propagation
    disable_vpc_classic_link disable_vpc_classic_link_dns_support disassociate_address
    disassociate_application_status_check
    disassociate_capacity_reservation_billing_owner
    disassociate_client_vpn_target_network disassociate_enclave_certificate_iam_role
    disassociate_iam_instance_profile disassociate_instance_event_window
    disassociate_ipam_byoasn disassociate_ipam_resource_discovery
    disassociate_nat_gateway_address disassociate_route_server
    disassociate_route_table disassociate_security_group_vpc
    disassociate_subnet_cidr_block disassociate_transit_gateway_multicast_domain
    disassociate_transit_gateway_policy_table disassociate_transit_gateway_route_table
    disassociate_trunk_interface disassociate_vpc_cidr_block enable_address_transfer
    enable_allowed_images_settings enable_application_status_check_suppression
    enable_aws_network_performance_metric_subscription enable_capacity_manager
    enable_ebs_encryption_by_default enable_fast_launch enable_fast_snapshot_restores
    enable_image enable_image_block_public_access enable_image_deprecation
    enable_image_deregistration_protection enable_instance_sql_ha_standby_detections
    enable_ipam_internet_registry_association enable_ipam_organization_admin_account
    enable_ipam_policy enable_reachability_analyzer_organization_sharing
    enable_route_server_propagation enable_serial_console_access
    enable_snapshot_block_public_access enable_transit_gateway_route_table_propagation
    enable_vgw_route_propagation enable_volume_io enable_vpc_classic_link
    enable_vpc_classic_link_dns_support
    export_client_vpn_client_certificate_revocation_list
    export_client_vpn_client_configuration export_image export_transit_gateway_routes
    export_verified_access_instance_client_configuration get_active_vpn_tunnel_status
    get_allowed_images_settings get_associated_enclave_certificate_iam_roles
    get_associated_ipv6_pool_cidrs get_aws_network_performance_data
    get_capacity_manager_attributes get_capacity_manager_metric_data
    get_capacity_manager_metric_dimensions get_capacity_manager_monitored_tag_keys
    get_capacity_manager_supportability_scores get_capacity_reservation_usage
    get_client_vpn_endpoint_authorization_policy get_coip_pool_usage
    get_console_output get_console_screenshot get_declarative_policies_report_summary
    get_default_credit_specification get_ebs_default_kms_key_id
    get_ebs_encryption_by_default get_enabled_ipam_policy
    get_flow_logs_integration_template get_groups_for_capacity_reservation
    get_host_reservation_purchase_preview get_image_ancestry
    get_image_block_public_access_state get_image_findings
    get_instance_metadata_defaults get_instance_tpm_ek_pub
    get_instance_types_from_instance_requirements get_instance_uefi_data
    get_ipam_address_history get_ipam_discovered_accounts
    get_ipam_discovered_public_addresses get_ipam_discovered_resource_cidrs
    get_ipam_discovered_routes get_ipam_internet_registry_association_asns
    get_ipam_internet_registry_association_cidrs get_ipam_policy_allocation_rules
    get_ipam_policy_organization_targets get_ipam_pool_allocations get_ipam_pool_cidrs
    get_ipam_prefix_list_resolver_rules get_ipam_prefix_list_resolver_version_entries
    get_ipam_prefix_list_resolver_versions get_ipam_resource_cidrs
    get_ipam_route_origin_authorizations get_ipam_route_protection_findings
    get_ipam_routing_policy_registration_deltas get_ipam_routing_policy_registrations
    get_launch_template_data get_managed_prefix_list_associations
    get_managed_prefix_list_entries get_managed_resource_visibility
    get_network_insights_access_scope_analysis_findings
    get_network_insights_access_scope_content get_password_data
    get_reserved_instances_exchange_quote get_route_server_associations
    get_route_server_propagations get_route_server_routing_database
    get_security_groups_for_vpc get_serial_console_access_status
    get_snapshot_block_public_access_state get_spot_placement_scores
    get_subnet_cidr_reservations get_transit_gateway_attachment_nat_configuration
    get_transit_gateway_attachment_propagations
    get_transit_gateway_metering_policy_entries
    get_transit_gateway_multicast_domain_associations
    get_transit_gateway_policy_table_associations
    get_transit_gateway_policy_table_entries
    get_transit_gateway_prefix_list_references
    get_transit_gateway_route_table_associations
    get_transit_gateway_route_table_propagations get_verified_access_endpoint_policy
    get_verified_access_endpoint_targets get_verified_access_group_policy
    get_vpc_resources_blocking_encryption_enforcement
    get_vpn_connection_device_sample_configuration get_vpn_connection_device_types
    get_vpn_tunnel_replacement_status
    import_client_vpn_client_certificate_revocation_list import_image import_instance
    import_key_pair import_snapshot import_volume list_images_in_recycle_bin
    list_snapshots_in_recycle_bin list_volumes_in_recycle_bin lock_snapshot
    modify_account_vpc_encryption_control modify_address_attribute
    modify_application_status_check modify_availability_zone_group
    modify_capacity_reservation modify_capacity_reservation_fleet
    modify_client_vpn_endpoint modify_client_vpn_endpoint_authorization_policy
    modify_default_credit_specification modify_ebs_default_kms_key_id modify_fleet
    modify_fpga_image_attribute modify_hosts modify_id_format
    modify_identity_id_format modify_image_attribute modify_instance_attribute
    modify_instance_capacity_reservation_attributes modify_instance_connect_endpoint
    modify_instance_cpu_options modify_instance_credit_specification
    modify_instance_event_start_time modify_instance_event_window
    modify_instance_maintenance_options modify_instance_metadata_defaults
    modify_instance_metadata_options modify_instance_network_performance_options
    modify_instance_placement modify_ipam modify_ipam_policy_allocation_rules
    modify_ipam_pool modify_ipam_pool_allocation modify_ipam_prefix_list_resolver
    modify_ipam_prefix_list_resolver_target modify_ipam_resource_cidr
    modify_ipam_resource_discovery modify_ipam_routing_policy_registration
    modify_ipam_scope modify_launch_template modify_local_gateway_route
    modify_managed_prefix_list modify_managed_resource_visibility
    modify_network_interface_attribute modify_private_dns_name_options
    modify_public_ip_dns_name_options modify_reserved_instances modify_route_server
    modify_security_group_rules modify_snapshot_attribute modify_snapshot_tier
    modify_spot_fleet_request modify_subnet_attribute
    modify_traffic_mirror_filter_network_services modify_traffic_mirror_filter_rule
    modify_traffic_mirror_session modify_transit_gateway
    modify_transit_gateway_attachment_nat_configuration
    modify_transit_gateway_metering_policy modify_transit_gateway_policy_table_entry
    modify_transit_gateway_prefix_list_reference modify_transit_gateway_vpc_attachment
    modify_verified_access_endpoint modify_verified_access_endpoint_policy
    modify_verified_access_group modify_verified_access_group_policy
    modify_verified_access_instance
    modify_verified_access_instance_logging_configuration
    modify_verified_access_trust_provider modify_volume modify_volume_attribute
    modify_vpc_attribute modify_vpc_block_public_access_exclusion
    modify_vpc_block_public_access_options modify_vpc_encryption_control
    modify_vpc_endpoint modify_vpc_endpoint_connection_notification
    modify_vpc_endpoint_payer_responsibility modify_vpc_endpoint_service_configuration
    modify_vpc_endpoint_service_payer_responsibility
    modify_vpc_endpoint_service_permissions modify_vpc_peering_connection_options
    modify_vpc_tenancy modify_vpn_connection modify_vpn_connection_options
    modify_vpn_tunnel_certificate modify_vpn_tunnel_options monitor_instances
    move_address_to_vpc move_byoip_cidr_to_ipam move_capacity_reservation_instances
    provision_byoip_cidr provision_ipam_byoasn provision_ipam_pool_cidr
    provision_public_ipv4_pool_cidr purchase_capacity_block
    purchase_capacity_block_extension purchase_host_reservation
    purchase_reserved_instances_offering purchase_scheduled_instances reboot_instances
    register_image register_instance_event_notification_attributes
    register_transit_gateway_multicast_group_members
    register_transit_gateway_multicast_group_sources
    reject_capacity_reservation_billing_ownership
    reject_transit_gateway_client_vpn_attachment
    reject_transit_gateway_multicast_domain_associations
    reject_transit_gateway_peering_attachment reject_transit_gateway_vpc_attachment
    reject_vpc_endpoint_connections reject_vpc_peering_connection release_address
    release_hosts release_ipam_pool_allocation
    replace_iam_instance_profile_association
    replace_image_criteria_in_allowed_images_settings
    replace_image_instance_type_specification replace_network_acl_association
    replace_network_acl_entry replace_route replace_route_table_association
    replace_transit_gateway_route replace_vpn_tunnel report_instance_status
    request_spot_fleet request_spot_instances reset_address_attribute
    reset_ebs_default_kms_key_id reset_fpga_image_attribute reset_image_attribute
    reset_instance_attribute reset_network_interface_attribute
    reset_snapshot_attribute restore_address_to_classic restore_image_from_recycle_bin
    restore_managed_prefix_list_version restore_snapshot_from_recycle_bin
    restore_snapshot_tier restore_volume_from_recycle_bin revoke_client_vpn_ingress
    revoke_security_group_egress revoke_security_group_ingress run_instances
    run_scheduled_instances search_local_gateway_routes
    search_transit_gateway_multicast_groups search_transit_gateway_routes
    send_diagnostic_interrupt start_declarative_policies_report start_instances
    start_network_insights_access_scope_analysis start_network_insights_analysis
    start_vpc_endpoint_service_private_dns_verification stop_instances
    terminate_client_vpn_connections terminate_instances unassign_ipv6_addresses
    unassign_private_ip_addresses unassign_private_nat_gateway_address unlock_snapshot
    unmonitor_instances update_capacity_manager_monitored_tag_keys
    update_capacity_manager_organizations_access
    update_interruptible_capacity_reservation_allocation
    update_security_group_rule_descriptions_egress
    update_security_group_rule_descriptions_ingress
    validate_security_group_quotas_for_interface withdraw_byoip_cidr";

pub const ECR_OPERATIONS: &str = "
    batch_check_layer_availability batch_delete_image batch_get_image
    batch_get_repository_scanning_configuration complete_layer_upload
    create_pull_through_cache_rule create_repository
    create_repository_creation_template delete_lifecycle_policy
    delete_pull_through_cache_rule delete_registry_policy delete_repository
    delete_repository_creation_template delete_repository_policy
    delete_signing_configuration deregister_pull_time_update_exclusion
    describe_image_replication_status describe_image_scan_findings
    describe_image_signing_status describe_images describe_pull_through_cache_rules
    describe_registry describe_replication_backfill_results describe_repositories
    describe_repository_creation_templates get_account_setting get_authorization_token
    get_download_url_for_layer get_lifecycle_policy get_lifecycle_policy_preview
    get_registry_policy get_registry_scanning_configuration get_repository_policy
    get_signing_configuration initiate_layer_upload list_image_referrers list_images
    list_pull_time_update_exclusions list_replication_backfills list_tags_for_resource
    put_account_setting put_image put_image_scanning_configuration
    put_image_tag_mutability put_lifecycle_policy put_registry_policy
    put_registry_scanning_configuration put_replication_configuration
    put_signing_configuration register_pull_time_update_exclusion
    set_repository_policy start_image_scan start_lifecycle_policy_preview
    start_replication_backfill stop_replication_backfill tag_resource untag_resource
    update_image_storage_class update_pull_through_cache_rule
    update_repository_creation_template upload_layer_part
    validate_pull_through_cache_rule";

pub const SSM_OPERATIONS: &str = "
    add_tags_to_resource associate_ops_item_related_item cancel_command
    cancel_maintenance_window_execution create_activation create_association
    create_association_batch create_cloud_connector create_document
    create_maintenance_window create_ops_item create_ops_metadata create_patch_baseline
    create_resource_data_sync delete_activation delete_association
    delete_cloud_connector delete_document delete_inventory delete_maintenance_window
    delete_ops_item delete_ops_metadata delete_parameter delete_parameters
    delete_patch_baseline delete_resource_data_sync delete_resource_policy
    deregister_managed_instance deregister_patch_baseline_for_patch_group
    deregister_target_from_maintenance_window deregister_task_from_maintenance_window
    describe_activations describe_association describe_association_execution_targets
    describe_association_executions describe_automation_executions
    describe_automation_step_executions describe_available_patches describe_document
    describe_document_permission describe_effective_instance_associations
    describe_effective_patches_for_patch_baseline describe_instance_associations_status
    describe_instance_information describe_instance_patch_states
    describe_instance_patch_states_for_patch_group describe_instance_patches
    describe_instance_properties describe_inventory_deletions
    describe_maintenance_window_execution_task_invocations
    describe_maintenance_window_execution_tasks describe_maintenance_window_executions
    describe_maintenance_window_schedule describe_maintenance_window_targets
    describe_maintenance_window_tasks describe_maintenance_windows
    describe_maintenance_windows_for_target describe_ops_items describe_parameters
    describe_patch_baselines describe_patch_group_state describe_patch_groups
    describe_patch_properties describe_sessions disassociate_ops_item_related_item
    get_access_token get_automation_execution get_calendar_state get_cloud_connector
    get_command_invocation get_connection_status get_default_patch_baseline
    get_deployable_patch_snapshot_for_instance get_document get_execution_preview
    get_inventory get_inventory_schema get_maintenance_window
    get_maintenance_window_execution get_maintenance_window_execution_task
    get_maintenance_window_execution_task_invocation get_maintenance_window_task
    get_ops_item get_ops_metadata get_ops_summary get_parameter get_parameter_history
    get_parameters get_parameters_by_path get_patch_baseline
    get_patch_baseline_for_patch_group get_resource_policies get_service_setting
    label_parameter_version list_association_versions list_associations
    list_cloud_connectors list_command_invocations list_commands list_compliance_items
    list_compliance_summaries list_document_metadata_history list_document_versions
    list_documents list_inventory_entries list_nodes list_nodes_summary
    list_ops_item_events list_ops_item_related_items list_ops_metadata
    list_resource_compliance_summaries list_resource_data_sync list_tags_for_resource
    modify_document_permission put_compliance_items put_inventory put_parameter
    put_resource_policy register_default_patch_baseline
    register_patch_baseline_for_patch_group register_target_with_maintenance_window
    register_task_with_maintenance_window remove_tags_from_resource
    reset_service_setting resume_session send_automation_signal send_command
    start_access_request start_associations_once start_automation_execution
    start_change_request_execution start_execution_preview start_session
    stop_automation_execution terminate_session unlabel_parameter_version
    update_association update_association_status update_cloud_connector update_document
    update_document_default_version update_document_metadata update_maintenance_window
    update_maintenance_window_target update_maintenance_window_task
    update_managed_instance_role update_ops_item update_ops_metadata
    update_patch_baseline update_resource_data_sync update_service_setting
    validate_cloud_connector";

pub struct Service {
    /// IAM action prefix.
    pub prefix: &'static str,
    /// The SDK crate, for telling services apart by a file's imports.
    pub sdk_crate: &'static str,
    pub operations: &'static str,
}

pub const SERVICES: [Service; 6] = [
    Service {
        prefix: "ecs",
        sdk_crate: "aws_sdk_ecs",
        operations: ECS_OPERATIONS,
    },
    Service {
        prefix: "logs",
        sdk_crate: "aws_sdk_cloudwatchlogs",
        operations: LOGS_OPERATIONS,
    },
    Service {
        prefix: "secretsmanager",
        sdk_crate: "aws_sdk_secretsmanager",
        operations: SECRETS_MANAGER_OPERATIONS,
    },
    Service {
        prefix: "ec2",
        sdk_crate: "aws_sdk_ec2",
        operations: EC2_OPERATIONS,
    },
    Service {
        prefix: "ecr",
        sdk_crate: "aws_sdk_ecr",
        operations: ECR_OPERATIONS,
    },
    Service {
        prefix: "ssm",
        sdk_crate: "aws_sdk_ssm",
        operations: SSM_OPERATIONS,
    },
];

/// SDK waiters poll an operation of their own.
pub const WAITERS: [(&str, &str); 4] = [
    ("wait_until_tasks_running", "ecs:DescribeTasks"),
    ("wait_until_tasks_stopped", "ecs:DescribeTasks"),
    ("wait_until_services_stable", "ecs:DescribeServices"),
    ("wait_until_services_inactive", "ecs:DescribeServices"),
];

/// Actions that are allowed on `"Resource": "*"`, because the service offers no
/// resource-level permission for them (ListTasks is then narrowed by a condition).
pub const UNSCOPABLE: [&str; 5] = [
    "ecs:DescribeTaskDefinition",
    "ecs:RegisterTaskDefinition",
    "ecs:ListTasks",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
];

pub fn action_name(prefix: &str, operation: &str) -> String {
    let pascal: String = operation
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!("{prefix}:{pascal}")
}

pub fn services_of(method: &str) -> Vec<&'static Service> {
    SERVICES
        .iter()
        .filter(|s| s.operations.split_whitespace().any(|op| op == method))
        .collect()
}

/// An AWS operation found in source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub line: usize,
    pub method: String,
    /// The IAM actions it needs.
    pub actions: Vec<String>,
}

/// Finds SDK fluent calls (`.run_task()`; fluent builders take no arguments) and
/// waiters, and names the IAM actions each needs. Operations several services share
/// (`tag_resource`, ...) are told apart by the receiver (`clients.ecs`, `logs`,
/// `secrets`) or else by which SDK crate the file uses.
pub fn aws_calls(source: &str) -> Result<Vec<Call>, String> {
    let code = code_only(source);
    let chars: Vec<char> = code.chars().collect();
    let mut calls = Vec::new();
    let mut line = 1;
    for i in 0..chars.len() {
        if chars[i] == '\n' {
            line += 1;
        }
        if chars[i] != '.' || !chars.get(i + 1).is_some_and(|c| c.is_ascii_lowercase()) {
            continue;
        }
        let end = (i + 1..chars.len())
            .find(|&j| !is_ident(chars[j]))
            .unwrap_or(chars.len());
        if chars.get(end) != Some(&'(') || chars.get(end + 1) != Some(&')') {
            continue;
        }
        let method: String = chars[i + 1..end].iter().collect();
        if let Some((_, action)) = WAITERS.iter().find(|(w, _)| *w == method) {
            calls.push(Call {
                line,
                method,
                actions: vec![action.to_string()],
            });
            continue;
        }
        let candidates = services_of(&method);
        let service = match candidates.as_slice() {
            [] => continue,
            [one] => *one,
            several => {
                let start = (0..i)
                    .rev()
                    .find(|&j| matches!(chars[j], ';' | '{' | '}' | '='))
                    .map_or(0, |j| j + 1);
                let receiver: String = chars[start..i].iter().collect();
                let words: Vec<&str> = receiver
                    .split(|c: char| !is_ident(c))
                    .filter(|w| !w.is_empty())
                    .collect();
                let hinted = |s: &Service| match s.prefix {
                    "secretsmanager" => words.iter().any(|w| w.contains("secret")),
                    prefix => words.iter().any(|w| {
                        *w == prefix
                            || w.strip_prefix(prefix).is_some_and(|r| r.starts_with('_'))
                            || w.strip_suffix(prefix).is_some_and(|r| r.ends_with('_'))
                    }),
                };
                let by_receiver: Vec<_> = several.iter().filter(|s| hinted(s)).collect();
                let by_import: Vec<_> = several
                    .iter()
                    .filter(|s| code.contains(s.sdk_crate))
                    .collect();
                match (by_receiver.as_slice(), by_import.as_slice()) {
                    ([one], _) | ([], [one]) => **one,
                    _ => {
                        return Err(format!(
                            "line {line}: cannot tell which service `.{method}()` calls \
                             (candidates: {}); name its client after its service (`ecs`, `logs`, `secrets`, `ec2`, `ecr`)",
                            several
                                .iter()
                                .map(|s| s.prefix)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
            }
        };
        let mut actions = vec![action_name(service.prefix, &method)];
        // Calls that need more than their own action.
        match (service.prefix, method.as_str()) {
            ("ecs", "run_task") => {
                actions.push("iam:PassRole".into());
                if code.contains(".tags(") || code.contains(".set_tags(") {
                    actions.push("ecs:TagResource".into());
                }
            }
            ("ecs", "register_task_definition") => actions.push("iam:PassRole".into()),
            ("secretsmanager", "batch_get_secret_value") => {
                actions.push("secretsmanager:GetSecretValue".into())
            }
            _ => {}
        }
        calls.push(Call {
            line,
            method,
            actions,
        });
    }
    Ok(calls)
}

pub fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}
