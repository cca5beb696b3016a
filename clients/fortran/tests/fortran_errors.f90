! The failures a Fortran caller meets, one per line on stdout as `<case> <ierr> <message>`, for
! tests/clients/test_fortran.py against a live server; it must never crash whatever the server says.
!
!   fortran_errors SERVER MODEL DOWN_ADDRESS CARD_OUT
!
! SERVER serves MODEL (4 particles); DOWN_ADDRESS has no server; the card of MODEL goes to CARD_OUT.
program fortran_errors
  use, intrinsic :: iso_c_binding, only: c_double
  use, intrinsic :: ieee_arithmetic, only: ieee_value, ieee_quiet_nan
  use calsurr_client
  implicit none
  type(calsurr_client_t) :: client, down
  character(len=1024) :: server, model, down_address, card_out
  character(len=:), allocatable :: json
  real(c_double) :: p4(0:3, 4, 2), p5(0:3, 5, 2), mean(2), tot(2)
  real(c_double) :: nan
  integer :: ierr, n, unit
  integer(8) :: start, finish, rate

  call get_command_argument(1, server)
  call get_command_argument(2, model)
  call get_command_argument(3, down_address)
  call get_command_argument(4, card_out)
  p4 = 0
  p4(:, 1, :) = reshape([500d0, 0d0, 0d0, 500d0, 500d0, 0d0, 0d0, 500d0], [4, 2])
  p4(:, 2, :) = reshape([500d0, 0d0, 0d0, -500d0, 500d0, 0d0, 0d0, -500d0], [4, 2])
  p4(:, 3, :) = reshape([500d0, 300d0, 0d0, 400d0, 500d0, 0d0, 300d0, 400d0], [4, 2])
  p4(:, 4, :) = reshape([500d0, -300d0, 0d0, -400d0, 500d0, 0d0, -300d0, -400d0], [4, 2])
  p5 = 1

  call calsurr_connect(trim(server), client, ierr)
  call report('connect', ierr)
  call calsurr_predict(client, trim(model), p4, 4, 2, mean, sigma_tot=tot, ierr=ierr)
  call report('predict', ierr)
  call calsurr_predict(client, 'no_such_model', p4, 4, 2, mean, ierr=ierr)
  call report('wrong_model', ierr)
  call calsurr_predict(client, trim(model), p5, 5, 2, mean, ierr=ierr)
  call report('wrong_nexternal', ierr)
  nan = ieee_value(nan, ieee_quiet_nan)
  p4(0, 3, 2) = nan
  call calsurr_predict(client, trim(model), p4, 4, 2, mean, ierr=ierr)
  call report('nan_input', ierr)
  call calsurr_predict(client, trim(model), p4, 4, 0, mean, ierr=ierr)
  call report('zero_events', ierr)
  call calsurr_model_particles(client, trim(model), n, ierr)
  write (*, '(a, 1x, i0, 1x, i0)') 'particles', ierr, n
  call calsurr_card(client, 'no_such_model', json, ierr)
  call report('card_wrong_model', ierr)
  call calsurr_card(client, trim(model), json, ierr)
  call report('card', ierr)
  open (newunit=unit, file=trim(card_out), access='stream', form='unformatted', status='replace', action='write')
  write (unit) json
  close (unit)
  call calsurr_close(client)
  call calsurr_close(client) ! a second close is a no-op

  call system_clock(start, rate)
  call calsurr_connect(trim(down_address), down, ierr, timeout_seconds=20d0, max_attempts=3, &
                       initial_backoff_seconds=0.2d0, max_backoff_seconds=1d0)
  call calsurr_predict(down, trim(model), p4, 4, 2, mean, ierr=ierr)
  call system_clock(finish)
  call report('server_down', ierr)
  write (*, '(a, 1x, f0.3)') 'server_down_seconds', real(finish - start, 8)/real(rate, 8)
  call calsurr_close(down)

contains

  subroutine report(name, code)
    character(len=*), intent(in) :: name
    integer, intent(in) :: code
    write (*, '(a, 1x, i0, 1x, a)') name, code, calsurr_error_message()
  end subroutine report

end program fortran_errors
