//! libvirt's errors in our terms, kept apart so that the safe wrappers
//! (`libvirt.rs`) and the raw ones (`libvirt_raw.rs`) both use it without
//! importing each other.

use virt::error::{Error as VirtError, ErrorNumber};

use super::{HvError, HvErrorKind};

/// Maps a libvirt error to ours, keeping libvirt's message for the operator.
pub(crate) fn hv_error(error: VirtError) -> HvError {
    use virt::enumutil::Enum;
    let kind = match error.code() {
        Enum::Known(ErrorNumber::NoDomain) => HvErrorKind::NoDomain,
        Enum::Known(ErrorNumber::NoConnect | ErrorNumber::InvalidConn | ErrorNumber::AuthFailed) => {
            HvErrorKind::Unreachable
        }
        Enum::Known(ErrorNumber::SystemError | ErrorNumber::Rpc) if is_connection_message(error.message()) => {
            HvErrorKind::Unreachable
        }
        Enum::Known(ErrorNumber::OperationInvalid) if error.message().contains("not running") => {
            HvErrorKind::NotRunning
        }
        _ => HvErrorKind::Other,
    };
    HvError::new(kind, error.message().to_owned())
}

fn is_connection_message(message: &str) -> bool {
    ["Failed to connect socket", "Cannot recv data", "Cannot write data", "connection", "End of file"]
        .iter()
        .any(|m| message.contains(m))
}
