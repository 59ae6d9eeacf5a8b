use std::time::Duration;

use sandlot_core::{Client, Error, Result};

use crate::args::{VolumeCommand, pairs};
use crate::printer::Printer;

pub async fn run(client: &Client, printer: &Printer, command: VolumeCommand) -> Result<i32> {
    match command {
        VolumeCommand::Create(args) => {
            let volume = client.create_volume(&args.spec()?).await?;
            printer.created_volume(&volume);
        }
        VolumeCommand::List(args) => {
            let tags = pairs("--tag", &args.tag)?;
            printer.volumes(&client.list_volumes(&tags).await?);
        }
        VolumeCommand::Inspect(args) => printer.volume(&client.get_volume(&args.name).await?),
        VolumeCommand::Delete(args) => {
            let timeout = Duration::try_from_secs_f64(args.timeout)
                .map_err(|_| Error::invalid("--timeout", "must be a number of seconds >= 0"))?;
            client
                .delete_volume(&args.name, args.force, timeout)
                .await?;
            printer.line(&format!("{} deleted", args.name));
        }
    }
    Ok(0)
}
