//! Golden bytes: the committed encoding of every message and of every enum variant.
//!
//! A change here means a change on the wire. If a test fails after you edited a wire type,
//! you most likely broke compatibility with deployed agents or hubs: reordered or removed a
//! variant, or changed a struct. Read the evolution rules in `proto/src/lib.rs`. Only an
//! intended, versioned change may re-bless the files, with `KITT_BLESS_GOLDEN=1 cargo test -p
//! proto golden`, and the diff of `proto/test_data/golden/` is then part of the review.
//!
//! Every enum is listed with all its variants through `every_variant!`, whose exhaustive
//! `match` stops the build when a variant is added without a golden sample.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::*;

macro_rules! every_variant {
    ($ty:ident { $($variant:ident => $value:expr),+ $(,)? }) => {{
        #[allow(unreachable_patterns)]
        fn name(value: &$ty) -> &'static str {
            match value { $($ty::$variant { .. } => stringify!($variant)),+ }
        }
        let values: Vec<$ty> = vec![$($value),+];
        let names = [$(stringify!($variant)),+];
        for (value, expected) in values.iter().zip(names) {
            assert_eq!(name(value), expected, "sample listed under the wrong variant");
        }
        (stringify!($ty), values)
    }};
}

fn printer() -> PrinterId {
    PrinterId::new("01P00A391800123").unwrap()
}

fn agent() -> AgentId {
    AgentId::new("pi-01").unwrap()
}

fn camera() -> CameraId {
    CameraId::new("chamber").unwrap()
}

const T0: UnixMillis = UnixMillis(1_764_000_000_000);

fn software() -> SoftwareVersion {
    SoftwareVersion {
        version: "0.1.0".into(),
        commit: Some("abc1234".into()),
        target: "aarch64-unknown-linux-gnu".into(),
    }
}

fn tray() -> Tray {
    Tray {
        slot: 1,
        material: Some("PLA".into()),
        color: Some(Rgb([0xDE, 0x43, 0x43])),
        remain_percent: Some(87),
        tray_uuid: Some("518B5E764415402695728F836BEAA8D9".into()),
    }
}

fn hms() -> Hms {
    Hms { attr: 0x0300_0100, code: 0x0001_0007 }
}

fn printing_state() -> PrinterState {
    PrinterState {
        state: PrintState::Printing,
        stage: Some(2),
        progress_percent: Some(42),
        remaining_s: Some(3600),
        layer: Some(57),
        total_layers: Some(180),
        job_name: Some("benchy".into()),
        nozzle_temp_c: Some(219.5),
        nozzle_target_c: Some(220.0),
        bed_temp_c: Some(55.0),
        bed_target_c: Some(55.0),
        chamber_temp_c: None,
        fans: vec![Fan { kind: FanKind::PartCooling, percent: 100 }],
        speed_level: Some(SpeedLevel::Standard),
        ams: vec![AmsUnit {
            id: 0,
            kind: AmsKind::AmsLite,
            humidity: Some(5),
            temp_c: Some(24.5),
            trays: vec![tray()],
        }],
        active_tray: Some(TrayRef::Ams { unit: 0, slot: 1 }),
        external_spool: None,
        hms: vec![hms()],
        print_error: None,
        lights: vec![Light { node: LightNode::ChamberLight, mode: LightMode::On }],
        door_open: Some(false),
        control: ControlCapability::Available,
        model: Some("N1".into()),
        firmware: Some("01.07.02.00".into()),
        last_report_at: Some(T0),
    }
}

fn command(action: CommandAction) -> Command {
    Command {
        id: CommandId([0x11; 16]),
        printer: printer(),
        issued_at: T0,
        expires_at: T0.plus_millis(60_000),
        preconditions: vec![Precondition::ControlAvailable],
        action,
    }
}

fn record(body: RecordBody) -> Record {
    Record { seq: Seq(1_000_001), observed_at: T0, body }
}

fn event(kind: PrinterEventKind) -> RecordBody {
    RecordBody::PrinterEvent(PrinterEvent { printer: printer(), kind })
}

fn snapshot_chunk() -> SnapshotChunk {
    SnapshotChunk {
        snapshot: SnapshotId([0x22; 16]),
        printer: printer(),
        camera: camera(),
        trigger: SnapshotTrigger::Layer(10),
        format: ImageFormat::Jpeg,
        captured_at: T0,
        total_len: 4,
        sha256: [0x33; 32],
        chunk_index: 0,
        chunk_count: 1,
        data: vec![0xFF, 0xD8, 0xFF, 0xD9],
    }
}

fn agent_messages() -> (&'static str, Vec<AgentMessage>) {
    every_variant!(AgentMessage {
        Hello => AgentMessage::Hello(AgentHello {
            agent: agent(),
            protocol_version: 1,
            software: software(),
            capabilities: Capabilities::PRINTER_CONTROL.with(Capabilities::SNAPSHOTS),
            printers: vec![PrinterInfo {
                id: printer(),
                vendor: Vendor::BambuLab,
                model: Some("C12".into()),
                name: Some("P1S left".into()),
                cameras: vec![camera()],
            }],
            last_seq: Seq(1_000_001),
        }),
        Records => AgentMessage::Records(vec![
            record(RecordBody::Telemetry(PrinterTelemetry {
                printer: printer(),
                state: Box::new(printing_state()),
            })),
            record(event(PrinterEventKind::Reachable)),
        ]),
        CertificateRequest => AgentMessage::CertificateRequest(CertificateRequest {
            csr_der: vec![0x30, 0x82, 0x01, 0x0a],
        }),
        Enroll => AgentMessage::Enroll(EnrollRequest {
            token: "kitt-enroll-0123456789abcdef".into(),
            csr_der: vec![0x30, 0x82],
            software: software(),
            hostname: "pi-01".into(),
        }),
        LiveFrame => AgentMessage::LiveFrame(LiveFrame {
            printer: printer(),
            camera: camera(),
            captured_at: T0,
            format: ImageFormat::Jpeg,
            data: vec![0xFF, 0xD8, 0xFF, 0xD9],
        }),
        FileWant => AgentMessage::FileWant(FileWant { transfer: 12, from: 8 << 20 }),
        FileStored => AgentMessage::FileStored(FileStored { transfer: 12, sha256: [0xA5; 32] }),
        FileRefused => AgentMessage::FileRefused(FileRefused {
            transfer: 12,
            reason: "no room in the file cache".into(),
        }),
    })
}

fn health_v2() -> AgentHealthV2 {
    AgentHealthV2 {
        health: AgentHealth {
            outbox_records: 12,
            outbox_bytes: 4096,
            drops: Vec::new(),
            disk_free_bytes: 8_000_000_000,
            uptime_s: 86_400,
            software: software(),
            certificate_expires_at: Some(T0.plus_millis(86_400_000)),
        },
        counters: AgentCounters {
            hub_reconnects: 4,
            hub_protocol_errors: 1,
            commands_refused: 2,
            printers: vec![PrinterCounters {
                printer: printer(),
                link_errors: 7,
                bad_payloads: 3,
                camera_errors: 5,
            }],
        },
    }
}

fn record_bodies() -> (&'static str, Vec<RecordBody>) {
    every_variant!(RecordBody {
        Telemetry => RecordBody::Telemetry(PrinterTelemetry {
            printer: printer(),
            state: Box::default(),
        }),
        PrinterEvent => event(PrinterEventKind::JobResumed),
        Snapshot => RecordBody::Snapshot(snapshot_chunk()),
        AgentHealth => RecordBody::AgentHealth(AgentHealth {
            outbox_records: 12,
            outbox_bytes: 4096,
            drops: vec![DropCount {
                class: DropClass::Telemetry,
                reason: DropReason::Capacity,
                count: 3,
            }],
            disk_free_bytes: 8_000_000_000,
            uptime_s: 86_400,
            software: software(),
            certificate_expires_at: Some(T0.plus_millis(86_400_000)),
        }),
        CommandResult => RecordBody::CommandResult(CommandResult {
            command: CommandId([0x11; 16]),
            printer: printer(),
            outcome: CommandOutcome::Succeeded,
        }),
        CameraHealth => RecordBody::CameraHealth(CameraHealth {
            printer: printer(),
            camera: camera(),
            source: "bambu port 6000 at 192.168.1.20".into(),
            state: CameraState::Streaming,
            fps_milli: 980,
            last_frame_at: Some(T0),
            width: 1280,
            height: 720,
            frames_total: 3600,
            last_error: None,
            live: true,
        }),
        AgentHealthV2 => RecordBody::AgentHealthV2(health_v2()),
        AgentHealthV3 => RecordBody::AgentHealthV3(AgentHealthV3 {
            health: health_v2(),
            clock: Some(ClockOffset { offset_ms: -10_800_123, uncertainty_ms: 4, measured_at: T0 }),
        }),
        TelemetryV2 => RecordBody::TelemetryV2(PrinterTelemetryV2 {
            printer: printer(),
            state: Box::new(klipper_state()),
        }),
        PrintersApplied => RecordBody::PrintersApplied(PrintersApplied {
            version: 3,
            printers: vec![
                PrinterApplied { id: printer(), error: None },
                PrinterApplied {
                    id: PrinterId::new("voron-1").unwrap(),
                    error: Some("url: https is not supported".into()),
                },
            ],
        }),
        Discovered => RecordBody::Discovered(DiscoveredPrinters {
            printers: vec![
                DiscoveredPrinter {
                    vendor: Vendor::BambuLab,
                    key: "01P00A391800123".into(),
                    name: Some("P1S by the window".into()),
                    model: Some("C12".into()),
                    address: "192.168.1.50".into(),
                    url: None,
                    connection: Some("lan".into()),
                    bind: Some("free".into()),
                },
                DiscoveredPrinter {
                    vendor: Vendor::Moonraker,
                    key: "http://192.168.1.60:7125".into(),
                    name: Some("Moonraker-1a2b3c4d @ voron".into()),
                    model: None,
                    address: "192.168.1.60".into(),
                    url: Some("http://192.168.1.60:7125".into()),
                    connection: None,
                    bind: None,
                },
            ],
        }),
    })
}

/// The printers a hub manages for an agent: one of each kind.
fn desired_printers() -> DesiredPrinters {
    DesiredPrinters {
        version: 3,
        printers: vec![
            ManagedPrinter {
                id: printer(),
                name: Some("P1S by the window".into()),
                model: Some("C12".into()),
                link: ManagedLink::Bambu {
                    host: "192.168.1.50".into(),
                    port: 8883,
                    access_code: "12345678".into(),
                },
                camera: true,
            },
            ManagedPrinter {
                id: PrinterId::new("voron-1").unwrap(),
                name: None,
                model: Some("Voron 2.4".into()),
                link: ManagedLink::Moonraker {
                    url: "http://192.168.1.60:7125".into(),
                    api_key: Some("0123456789abcdef".into()),
                    web_port: 80,
                },
                camera: false,
            },
        ],
    }
}

/// A Klipper printer mid-print, every neutral field and the Klipper part filled in.
fn klipper_state() -> PrinterStateV2 {
    PrinterStateV2 {
        state: PrintState::Printing,
        progress_percent: Some(42),
        remaining_s: Some(3600),
        layer: Some(57),
        total_layers: Some(180),
        job_name: Some("benchy.gcode".into()),
        heaters: vec![
            Heater {
                kind: HeaterKind::Nozzle,
                index: 0,
                temp_c: Some(219.5),
                target_c: Some(220.0),
            },
            Heater { kind: HeaterKind::Bed, index: 0, temp_c: Some(60.0), target_c: Some(60.0) },
        ],
        fans: vec![Fan { kind: FanKind::PartCooling, percent: 100 }],
        speed_percent: Some(100),
        lights: Vec::new(),
        door_open: None,
        filament: vec![FilamentSlot { unit: None, tray: tray() }],
        active_filament: Some(SlotRef { unit: None, slot: 1 }),
        message: Some("MCU 'mcu' shutdown: Timer too close".into()),
        control: ControlCapability::Available,
        controls: Controls::PAUSE.union(Controls::RESUME).union(Controls::EMERGENCY_STOP),
        model: Some("Voron 2.4".into()),
        firmware: Some("v0.12.0-396".into()),
        last_report_at: Some(T0),
        detail: VendorDetail::Klipper(KlipperDetail {
            klippy: KlippyState::Ready,
            print_stats_state: Some("printing".into()),
            display_message: Some("Layer 57".into()),
            sensors: vec![FilamentSensor {
                name: "runout".into(),
                enabled: true,
                detected: Some(true),
            }],
            excluded_objects: vec!["part_2".into()],
        }),
    }
}

fn vendor_details() -> (&'static str, Vec<VendorDetail>) {
    every_variant!(VendorDetail {
        None => VendorDetail::None,
        Bambu => PrinterStateV2::from_v1(&printing_state()).detail,
        Klipper => klipper_state().detail,
    })
}

fn managed_links() -> (&'static str, Vec<ManagedLink>) {
    every_variant!(ManagedLink {
        Bambu => ManagedLink::Bambu { host: "printer.lan".into(), port: 8883, access_code: "31415926".into() },
        Moonraker => ManagedLink::Moonraker { url: "http://voron.local:7125".into(), api_key: None, web_port: 8080 },
    })
}

fn heater_kinds() -> (&'static str, Vec<HeaterKind>) {
    every_variant!(HeaterKind {
        Nozzle => HeaterKind::Nozzle,
        Bed => HeaterKind::Bed,
        Chamber => HeaterKind::Chamber,
    })
}

fn klippy_states() -> (&'static str, Vec<KlippyState>) {
    every_variant!(KlippyState {
        Unknown => KlippyState::Unknown,
        Startup => KlippyState::Startup,
        Ready => KlippyState::Ready,
        Error => KlippyState::Error,
        Shutdown => KlippyState::Shutdown,
        Disconnected => KlippyState::Disconnected,
    })
}

fn hub_messages() -> (&'static str, Vec<HubMessage>) {
    every_variant!(HubMessage {
        Welcome => HubMessage::Welcome(HubWelcome {
            protocol_version: 1,
            hub_version: "0.1.0".into(),
            acked_through: Seq(999_999),
            hub_time: T0,
        }),
        Ack => HubMessage::Ack(Ack { through: Seq(1_000_001) }),
        Command => HubMessage::Command(command(CommandAction::Pause)),
        ConfigPush => HubMessage::ConfigPush(ConfigPush {
            revision: 7,
            toml: "[outbox]\ncapacity_bytes = 67108864\n".into(),
        }),
        CertificateIssued => HubMessage::CertificateIssued(CertificateIssued {
            chain_der: vec![vec![0x30, 0x82]],
            not_after: T0.plus_millis(7 * 86_400_000),
        }),
        Enrolled => HubMessage::Enrolled(Enrolled {
            agent: agent(),
            chain_der: vec![vec![0x30, 0x82]],
            hub_ca_der: vec![0x30, 0x82, 0x02],
            not_after: T0.plus_millis(7 * 86_400_000),
        }),
        EnrollRefused => HubMessage::EnrollRefused(EnrollRefusal::ExpiredToken),
        LiveView => HubMessage::LiveView(LiveViewRequest {
            printer: printer(),
            camera: camera(),
            action: LiveViewAction::Start { max_fps_milli: 2000 },
        }),
        Disconnect => HubMessage::Disconnect(DisconnectReason::Revoked),
        Printers => HubMessage::Printers(desired_printers()),
        FileOffer => HubMessage::FileOffer(FileOffer {
            transfer: 12,
            sha256: [0xA5; 32],
            size: 5_000_000,
            name: "benchy.gcode.3mf".into(),
        }),
        FileCancel => HubMessage::FileCancel { transfer: 12 },
    })
}

fn event_kinds() -> (&'static str, Vec<PrinterEventKind>) {
    use PrinterEventKind as K;
    every_variant!(PrinterEventKind {
        StateChanged => K::StateChanged { from: PrintState::Idle, to: PrintState::Preparing },
        JobStarted => K::JobStarted { job_name: Some("benchy".into()), total_layers: Some(180) },
        JobPaused => K::JobPaused { reason: Some(6) },
        JobResumed => K::JobResumed,
        JobFinished => K::JobFinished {
            job_name: Some("benchy".into()),
            outcome: JobOutcome::Succeeded,
        },
        HmsRaised => K::HmsRaised(hms()),
        HmsCleared => K::HmsCleared(hms()),
        PrintErrorRaised => K::PrintErrorRaised { code: 0x0700_8006 },
        PrintErrorCleared => K::PrintErrorCleared { code: 0x0700_8006 },
        ActiveTrayChanged => K::ActiveTrayChanged {
            from: None,
            to: Some(TrayRef::Ams { unit: 0, slot: 1 }),
        },
        TrayChanged => K::TrayChanged { unit: 0, tray: tray() },
        Reachable => K::Reachable,
        Unreachable => K::Unreachable { reason: "no report for 30 s".into() },
        ControlChanged => K::ControlChanged {
            from: ControlCapability::Unknown,
            to: ControlCapability::ReadOnly,
        },
        Fault => K::Fault { message: "Heater extruder not heating at expected rate".into() },
        FaultCleared => K::FaultCleared,
        FilamentUsed => K::FilamentUsed { millimetres: 1234.5 },
        SpoolTagged => K::SpoolTagged(crate::SpoolTag {
            unit: Some(0),
            slot: 2,
            tray_uuid: "5E6F708192A3B4C5D6E7F8091A2B3C4D".into(),
            product: Some("PETG HF".into()),
            material: Some("PETG".into()),
            color: Some(Rgb([0xC1, 0x2E, 0x1F])),
            weight_g: Some(1000),
            diameter_um: Some(1750),
            remain_percent: Some(100),
        }),
    })
}

fn command_actions() -> (&'static str, Vec<CommandAction>) {
    every_variant!(CommandAction {
        Pause => CommandAction::Pause,
        Resume => CommandAction::Resume,
        Stop => CommandAction::Stop,
        SetLight => CommandAction::SetLight { node: LightNode::WorkLight, mode: LightMode::Off },
        SetSpeed => CommandAction::SetSpeed(SpeedLevel::Sport),
        RequestFullPush => CommandAction::RequestFullPush,
        StartPrint => CommandAction::StartPrint(StartPrint {
            file: "/model/benchy.gcode.3mf".into(),
            plate: 1,
            job_name: "benchy".into(),
            ams_mapping: vec![1, -1],
            use_ams: true,
            bed_leveling: true,
            timelapse: false,
        }),
        Gcode => CommandAction::Gcode("G28\nM104 S200".into()),
        FirmwareRestart => CommandAction::FirmwareRestart,
        EmergencyStop => CommandAction::EmergencyStop,
        StartJob => CommandAction::StartJob(StartJob {
            job: 12,
            sha256: [0xA5; 32],
            size: 5_000_000,
            print: StartPrint {
                file: "kitt-12-1.gcode.3mf".into(),
                plate: 2,
                job_name: "benchy".into(),
                ams_mapping: vec![-1, 2],
                use_ams: true,
                bed_leveling: true,
                timelapse: false,
            },
            flow_calibration: true,
        }),
    })
}

fn command_outcomes() -> (&'static str, Vec<CommandOutcome>) {
    use CommandOutcome as O;
    every_variant!(CommandOutcome {
        Succeeded => O::Succeeded,
        Refused => O::Refused { reason: "84033543".into() },
        TimedOut => O::TimedOut,
        Expired => O::Expired,
        PreconditionFailed => O::PreconditionFailed {
            precondition: Precondition::StateIn(vec![PrintState::Idle]),
            detail: "printer is printing".into(),
        },
        ReadOnly => O::ReadOnly,
        Unsupported => O::Unsupported { detail: "unknown printer".into() },
        Failed => O::Failed { detail: "printer unreachable".into() },
    })
}

fn preconditions() -> (&'static str, Vec<Precondition>) {
    every_variant!(Precondition {
        StateIn => Precondition::StateIn(vec![PrintState::Idle, PrintState::Finished]),
        PlateConfirmedClear => Precondition::PlateConfirmedClear { by: "ana".into(), at: T0 },
        ControlAvailable => Precondition::ControlAvailable,
        PlateClearThrough => Precondition::PlateClearThrough { by: "ana".into(), through: Seq(4242) },
        FilamentLoaded => Precondition::FilamentLoaded {
            slot: SlotRef { unit: Some(0), slot: 2 },
            material: "PETG".into(),
            color: Some(Rgb([0xFF, 0x66, 0x00])),
            tolerance_centi: 2000,
        },
        NozzleDiameter => Precondition::NozzleDiameter { micrometres: 400 },
    })
}

fn print_states() -> (&'static str, Vec<PrintState>) {
    use PrintState as S;
    every_variant!(PrintState {
        Idle => S::Idle,
        Preparing => S::Preparing,
        Printing => S::Printing,
        Paused => S::Paused,
        Finished => S::Finished,
        Failed => S::Failed,
        Offline => S::Offline,
    })
}

fn control_capabilities() -> (&'static str, Vec<ControlCapability>) {
    use ControlCapability as C;
    every_variant!(ControlCapability {
        Available => C::Available,
        ReadOnly => C::ReadOnly,
        Unknown => C::Unknown,
    })
}

fn fan_kinds() -> (&'static str, Vec<FanKind>) {
    every_variant!(FanKind {
        PartCooling => FanKind::PartCooling,
        Auxiliary => FanKind::Auxiliary,
        Chamber => FanKind::Chamber,
        Heatbreak => FanKind::Heatbreak,
    })
}

fn speed_levels() -> (&'static str, Vec<SpeedLevel>) {
    every_variant!(SpeedLevel {
        Silent => SpeedLevel::Silent,
        Standard => SpeedLevel::Standard,
        Sport => SpeedLevel::Sport,
        Ludicrous => SpeedLevel::Ludicrous,
    })
}

fn ams_kinds() -> (&'static str, Vec<AmsKind>) {
    every_variant!(AmsKind {
        Unknown => AmsKind::Unknown,
        Ams => AmsKind::Ams,
        AmsLite => AmsKind::AmsLite,
        Ams2Pro => AmsKind::Ams2Pro,
        AmsHt => AmsKind::AmsHt,
    })
}

fn tray_refs() -> (&'static str, Vec<TrayRef>) {
    every_variant!(TrayRef {
        Ams => TrayRef::Ams { unit: 128, slot: 0 },
        External => TrayRef::External,
    })
}

fn light_nodes() -> (&'static str, Vec<LightNode>) {
    every_variant!(LightNode {
        ChamberLight => LightNode::ChamberLight,
        WorkLight => LightNode::WorkLight,
        ChamberLight2 => LightNode::ChamberLight2,
        HeatbedLight => LightNode::HeatbedLight,
        Other => LightNode::Other("toolhead_light".into()),
    })
}

fn light_modes() -> (&'static str, Vec<LightMode>) {
    every_variant!(LightMode {
        On => LightMode::On,
        Off => LightMode::Off,
        Flashing => LightMode::Flashing,
    })
}

fn job_outcomes() -> (&'static str, Vec<JobOutcome>) {
    every_variant!(JobOutcome {
        Succeeded => JobOutcome::Succeeded,
        Failed => JobOutcome::Failed { print_error: Some(0x0300_8003), hms: vec![hms()] },
        Cancelled => JobOutcome::Cancelled,
    })
}

fn vendors() -> (&'static str, Vec<Vendor>) {
    every_variant!(Vendor {
        BambuLab => Vendor::BambuLab,
        Moonraker => Vendor::Moonraker,
        Elegoo => Vendor::Elegoo,
        Snapmaker => Vendor::Snapmaker,
    })
}

fn snapshot_triggers() -> (&'static str, Vec<SnapshotTrigger>) {
    use SnapshotTrigger as T;
    every_variant!(SnapshotTrigger {
        JobStarted => T::JobStarted,
        FirstLayerDone => T::FirstLayerDone,
        Interval => T::Interval,
        Layer => T::Layer(25),
        Paused => T::Paused,
        Failed => T::Failed,
        Finished => T::Finished,
        Requested => T::Requested,
    })
}

fn camera_states() -> (&'static str, Vec<CameraState>) {
    every_variant!(CameraState {
        Idle => CameraState::Idle,
        Connecting => CameraState::Connecting,
        Streaming => CameraState::Streaming,
        Failed => CameraState::Failed,
    })
}

fn image_formats() -> (&'static str, Vec<ImageFormat>) {
    every_variant!(ImageFormat { Jpeg => ImageFormat::Jpeg })
}

fn drop_classes() -> (&'static str, Vec<DropClass>) {
    every_variant!(DropClass {
        Telemetry => DropClass::Telemetry,
        Event => DropClass::Event,
        Snapshot => DropClass::Snapshot,
        Health => DropClass::Health,
    })
}

fn drop_reasons() -> (&'static str, Vec<DropReason>) {
    every_variant!(DropReason {
        Capacity => DropReason::Capacity,
        Corrupt => DropReason::Corrupt,
    })
}

fn enroll_refusals() -> (&'static str, Vec<EnrollRefusal>) {
    use EnrollRefusal as R;
    every_variant!(EnrollRefusal {
        UnknownToken => R::UnknownToken,
        ExpiredToken => R::ExpiredToken,
        TokenAlreadyUsed => R::TokenAlreadyUsed,
        BadCsr => R::BadCsr { detail: "signature does not verify".into() },
    })
}

fn live_view_actions() -> (&'static str, Vec<LiveViewAction>) {
    every_variant!(LiveViewAction {
        Start => LiveViewAction::Start { max_fps_milli: 1000 },
        Stop => LiveViewAction::Stop,
        Snapshot => LiveViewAction::Snapshot,
    })
}

fn disconnect_reasons() -> (&'static str, Vec<DisconnectReason>) {
    use DisconnectReason as D;
    every_variant!(DisconnectReason {
        Revoked => D::Revoked,
        UnsupportedVersion => D::UnsupportedVersion { hub_min: 1, hub_max: 1 },
        ProtocolViolation => D::ProtocolViolation { detail: "seq went backwards".into() },
        ShuttingDown => D::ShuttingDown,
        Superseded => D::Superseded,
    })
}

fn golden_dir() -> PathBuf {
    // At run time: a binary built in another clone sharing the target directory must read
    // (and bless) this checkout's files.
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("test_data/golden")
}

/// Renders bytes as the committed file: a comment, then 32 hex bytes a line.
fn render(title: &str, bytes: &[u8]) -> String {
    let mut out =
        format!("# {title}\n# Generated by the golden tests; see proto/src/tests/golden.rs.\n");
    for line in bytes.chunks(32) {
        writeln!(out, "{}", hex::encode(line)).unwrap();
    }
    out
}

fn parse(text: &str) -> Vec<u8> {
    let hex: String =
        text.lines().filter(|line| !line.starts_with('#')).flat_map(|l| l.trim().chars()).collect();
    hex::decode(hex).expect("golden file holds hex")
}

/// What the golden checks found: mismatches, and the files they compared against.
#[derive(Default)]
struct Golden {
    failures: Vec<String>,
    files: Vec<String>,
}

/// Compares `bytes` with the committed file `name.hex`; collects mismatches.
fn check(name: &str, title: &str, bytes: &[u8], golden: &mut Golden) -> Option<Vec<u8>> {
    let file = format!("{name}.hex");
    let path = golden_dir().join(&file);
    golden.files.push(file);
    let failures = &mut golden.failures;
    if std::env::var_os("KITT_BLESS_GOLDEN").is_some() {
        std::fs::write(&path, render(title, bytes)).unwrap();
        return Some(bytes.to_vec());
    }
    let Ok(text) = std::fs::read_to_string(&path) else {
        failures.push(format!("{name}: no golden file at {}", path.display()));
        return None;
    };
    let committed = parse(&text);
    if committed != bytes {
        failures.push(format!(
            "{name}: encoding changed\n  committed: {}\n  now:       {}",
            hex::encode(&committed),
            hex::encode(bytes)
        ));
    }
    Some(committed)
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Checks one top-level message enum: a framed golden file per variant, each decoding back
/// to its value.
fn check_messages<T>((ty, values): (&str, Vec<T>), golden: &mut Golden)
where
    T: frame::Message + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    for value in values {
        let variant = format!("{value:?}");
        let variant = variant.split(['(', ' ', '{']).next().unwrap_or_default().to_owned();
        let name = format!("{}.{}", snake_case(ty), snake_case(&variant));
        let bytes = frame::encode(&value).unwrap();
        if let Some(committed) = check(&name, &format!("{ty}::{variant}, framed"), &bytes, golden) {
            match frame::decode::<T>(&committed, frame::DEFAULT_MAX_PAYLOAD) {
                Ok(decoded) if decoded == value => {}
                other => {
                    golden.failures.push(format!("{name}: committed bytes decode to {other:?}"))
                }
            }
        }
    }
}

/// A `Records` frame with a record of the newest version: its header says so.
fn check_newest_records(golden: &mut Golden) {
    let (_, bodies) = record_bodies();
    let newest = bodies.into_iter().max_by_key(RecordBody::since).expect("records exist");
    let message = AgentMessage::Records(vec![record(newest)]);
    let bytes = frame::encode(&message).unwrap();
    let title = format!("AgentMessage::Records of a version {} record, framed", message.since());
    if let Some(committed) = check("agent_message.records_newest", &title, &bytes, golden) {
        match frame::decode::<AgentMessage>(&committed, frame::DEFAULT_MAX_PAYLOAD) {
            Ok(decoded) if decoded == message => {}
            other => golden.failures.push(format!("records_newest: decodes to {other:?}")),
        }
    }
}

#[test]
fn a_frame_carries_the_first_version_that_has_its_content() {
    let version = |bytes: &[u8]| u16::from_le_bytes([bytes[2], bytes[3]]);
    for body in record_bodies().1 {
        let expected = match body {
            RecordBody::CameraHealth(_) => 2,
            RecordBody::AgentHealthV2(_) => 3,
            RecordBody::AgentHealthV3(_) => 4,
            RecordBody::TelemetryV2(_) => 5,
            RecordBody::PrintersApplied(_) | RecordBody::Discovered(_) => 6,
            _ => 1,
        };
        let mixed =
            AgentMessage::Records(vec![record(event(PrinterEventKind::Reachable)), record(body)]);
        assert_eq!(version(&frame::encode(&mixed).unwrap()), expected, "{mixed:?}");
    }
    // Hello and Welcome must be readable by a peer of any version.
    for message in agent_messages().1 {
        let expected = match message {
            AgentMessage::FileWant(_)
            | AgentMessage::FileStored(_)
            | AgentMessage::FileRefused(_) => 7,
            _ => 1,
        };
        assert_eq!(version(&frame::encode(&message).unwrap()), expected, "{message:?}");
    }
    for message in hub_messages().1 {
        let expected = match message {
            HubMessage::Printers(_) => 6,
            HubMessage::FileOffer(_) | HubMessage::FileCancel { .. } => 7,
            _ => 1,
        };
        assert_eq!(version(&frame::encode(&message).unwrap()), expected, "{message:?}");
    }
    assert_eq!(version(&frame::encode(&AgentMessage::Records(Vec::new())).unwrap()), 1);
    // A command is as new as its newest precondition: a hub must not send a version 4 plate
    // check to an agent of version 3, which could not decode it.
    for precondition in preconditions().1 {
        let expected = precondition.since();
        let mut start = command(CommandAction::RequestFullPush);
        start.preconditions.push(precondition);
        let message = HubMessage::Command(start);
        assert_eq!(version(&frame::encode(&message).unwrap()), expected, "{message:?}");
    }
    let clock_free = Precondition::PlateClearThrough { by: "ana".into(), through: Seq(1) };
    assert_eq!(clock_free.since(), 4);
    // An event is as new as its kind.
    for kind in event_kinds().1 {
        let expected = kind.since();
        let message = AgentMessage::Records(vec![record(event(kind))]);
        assert_eq!(version(&frame::encode(&message).unwrap()), expected, "{message:?}");
    }
    assert_eq!(PrinterEventKind::FaultCleared.since(), 5);
    // A command is as new as its action: an agent of version 5 cannot decode an emergency
    // stop.
    for action in command_actions().1 {
        let expected = action.since();
        let message = HubMessage::Command(command(action));
        assert_eq!(version(&frame::encode(&message).unwrap()), expected, "{message:?}");
    }
    assert_eq!(CommandAction::EmergencyStop.since(), 6);
    // A managed printer's secret never shows in a log.
    let shown = format!("{:?}", desired_printers());
    assert!(!shown.contains("12345678") && !shown.contains("0123456789abcdef"), "{shown}");
}

/// Checks one nested enum: all its variants, in declaration order, in one postcard file.
fn check_enum<T>((ty, values): (&str, Vec<T>), golden: &mut Golden)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let name = snake_case(ty);
    let bytes = postcard::to_stdvec(&values).unwrap();
    let title = format!("Vec<{ty}> of every variant in declaration order, postcard");
    if let Some(committed) = check(&name, &title, &bytes, golden) {
        match postcard::from_bytes::<Vec<T>>(&committed) {
            Ok(decoded) if decoded == values => {}
            other => golden.failures.push(format!("{name}: committed bytes decode to {other:?}")),
        }
    }
}

#[test]
fn golden_bytes_are_unchanged() {
    let mut golden = Golden::default();
    check_messages(agent_messages(), &mut golden);
    check_newest_records(&mut golden);
    check_messages(hub_messages(), &mut golden);
    check_enum(record_bodies(), &mut golden);
    check_enum(event_kinds(), &mut golden);
    check_enum(command_actions(), &mut golden);
    check_enum(command_outcomes(), &mut golden);
    check_enum(preconditions(), &mut golden);
    check_enum(print_states(), &mut golden);
    check_enum(control_capabilities(), &mut golden);
    check_enum(fan_kinds(), &mut golden);
    check_enum(speed_levels(), &mut golden);
    check_enum(ams_kinds(), &mut golden);
    check_enum(tray_refs(), &mut golden);
    check_enum(light_nodes(), &mut golden);
    check_enum(light_modes(), &mut golden);
    check_enum(job_outcomes(), &mut golden);
    check_enum(vendors(), &mut golden);
    check_enum(snapshot_triggers(), &mut golden);
    check_enum(image_formats(), &mut golden);
    check_enum(camera_states(), &mut golden);
    check_enum(drop_classes(), &mut golden);
    check_enum(drop_reasons(), &mut golden);
    check_enum(enroll_refusals(), &mut golden);
    check_enum(live_view_actions(), &mut golden);
    check_enum(disconnect_reasons(), &mut golden);
    check_enum(vendor_details(), &mut golden);
    check_enum(heater_kinds(), &mut golden);
    check_enum(klippy_states(), &mut golden);
    check_enum(managed_links(), &mut golden);

    // A removed variant leaves its file behind: fail rather than silently lose its pin.
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !golden.files.contains(&name) {
            golden.failures.push(format!("{name}: golden file with no sample"));
        }
    }
    assert!(
        golden.failures.is_empty(),
        "the wire encoding changed; see the doc comment of proto/src/tests/golden.rs\n{}",
        golden.failures.join("\n")
    );
}
