//! `daas-agent`: runs inside each desktop VM and reports activity to the
//! server. Reporting arrives with the agent issue; until then the binary
//! says so and exits with an error, so nobody mistakes it for a working agent.

fn main() -> std::process::ExitCode {
    eprintln!(
        "daas-agent {}: activity reporting is not implemented yet",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::FAILURE
}
